//! Braille charts.
