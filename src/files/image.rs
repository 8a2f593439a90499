//! Images saved as PNG (through the `png` crate).

use std::io::Write;

use crate::error::{Error, Result};

/// An image to save with `Files::save_image`: 8-bit or `f32` (0..1) pixels,
/// row-major, gray / RGB / RGBA.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// // A 2x1 RGB image from floats in 0..1: red, then blue.
/// let rgb = [1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0];
/// let image = ml_dash::Image::F32 { width: 2, height: 1, channels: 3, data: &rgb };
/// run.files("images").save_image("rb.png", image)?;
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Image<'a> {
    /// One byte per pixel.
    Gray8 {
        /// Pixels per row.
        width: u32,
        /// Rows.
        height: u32,
        /// `width * height` bytes.
        data: &'a [u8],
    },
    /// Three bytes per pixel.
    Rgb8 {
        /// Pixels per row.
        width: u32,
        /// Rows.
        height: u32,
        /// `width * height * 3` bytes.
        data: &'a [u8],
    },
    /// Four bytes per pixel.
    Rgba8 {
        /// Pixels per row.
        width: u32,
        /// Rows.
        height: u32,
        /// `width * height * 4` bytes.
        data: &'a [u8],
    },
    /// Floats in 0..1 (clamped), 1 (gray), 3 (RGB) or 4 (RGBA) per pixel.
    F32 {
        /// Pixels per row.
        width: u32,
        /// Rows.
        height: u32,
        /// 1, 3 or 4.
        channels: u8,
        /// `width * height * channels` floats.
        data: &'a [f32],
    },
}

impl Image<'_> {
    fn shape(&self) -> (u32, u32, u8, usize) {
        match *self {
            Image::Gray8 {
                width,
                height,
                data,
            } => (width, height, 1, data.len()),
            Image::Rgb8 {
                width,
                height,
                data,
            } => (width, height, 3, data.len()),
            Image::Rgba8 {
                width,
                height,
                data,
            } => (width, height, 4, data.len()),
            Image::F32 {
                width,
                height,
                channels,
                data,
            } => (width, height, channels, data.len()),
        }
    }

    /// Checks the buffer length against the shape.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the expected and actual lengths.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::Image;
    /// let data = [0u8; 12];
    /// assert!(Image::Rgb8 { width: 2, height: 2, data: &data }.validate().is_ok());
    /// assert!(Image::Rgba8 { width: 2, height: 2, data: &data }.validate().is_err()); // needs 16
    /// ```
    pub fn validate(&self) -> Result<()> {
        let (w, h, c, len) = self.shape();
        if !matches!(c, 1 | 3 | 4) {
            return Err(Error::InvalidValue(format!(
                "an image has 1, 3 or 4 channels, not {c}"
            )));
        }
        let want = w as u64 * h as u64 * c as u64;
        if w == 0 || h == 0 || want != len as u64 {
            return Err(Error::InvalidValue(format!(
                "image buffer holds {len} values, but {w}x{h} with {c} channel(s) needs {want}"
            )));
        }
        Ok(())
    }

    /// Writes the image as PNG.
    pub(crate) fn write_png(&self, out: impl Write) -> std::io::Result<()> {
        let (w, h, c, _) = self.shape();
        let mut enc = png::Encoder::new(out, w, h);
        enc.set_color(match c {
            1 => png::ColorType::Grayscale,
            3 => png::ColorType::Rgb,
            _ => png::ColorType::Rgba,
        });
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        let bytes: Vec<u8>;
        let data: &[u8] = match *self {
            Image::Gray8 { data, .. } | Image::Rgb8 { data, .. } | Image::Rgba8 { data, .. } => {
                data
            }
            Image::F32 { data, .. } => {
                bytes = data
                    .iter()
                    .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                    .collect();
                &bytes
            }
        };
        writer
            .write_image_data(data)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}
