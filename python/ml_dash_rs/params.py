"""``exp.params``: each ``set`` call is one version, as the SDK writes it."""

import json
import os

from .exceptions import ExperimentError


def _plain(value):
    """A class (a params_proto config) as the dict of its public attributes."""
    if isinstance(value, type):
        return {
            k: _plain(v)
            for k, v in vars(value).items()
            if not k.startswith("_") and not callable(v) and not isinstance(v, (staticmethod, classmethod, property))
        }
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def flatten_dict(d, parent_key="", sep="."):
    """``{"model": {"lr": 1}}`` as ``{"model.lr": 1}``."""
    out = {}
    for k, v in d.items():
        key = f"{parent_key}{sep}{k}" if parent_key else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten_dict(v, key, sep))
        else:
            out[key] = v
    return out


def unflatten_dict(d, sep="."):
    """``{"model.lr": 1}`` as ``{"model": {"lr": 1}}``."""
    out = {}
    for key, v in d.items():
        node = out
        *parents, leaf = key.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


class ParametersBuilder:
    """``exp.params.set(lr=1e-3, model={"layers": 4})`` and ``exp.params.get()``."""

    __slots__ = ("_experiment",)

    flatten_dict = staticmethod(flatten_dict)
    unflatten_dict = staticmethod(unflatten_dict)

    def __init__(self, experiment):
        self._experiment = experiment

    def _run(self):
        run = self._experiment._run
        if run is None:
            raise ExperimentError(
                "Experiment not started. Use 'with experiment.run:' or call experiment.run.start() first."
            )
        return run

    def set(self, **kwargs):
        """Merges ``kwargs`` (nested dicts flattened with ``.``) into the parameters: one version."""
        run = self._run()
        values = _plain(kwargs)
        if values:
            run.params_set(values)
            self._experiment._params_set.update(flatten_dict(values))
        return self

    log = set

    def get(self, flatten=True):
        """The stored parameters (flattened, or nested with ``flatten=False``)."""
        run = self._run()
        params = dict(self._experiment._params_set)
        if self._experiment._dash_root is not None:
            run.flush()
            try:
                with open(os.path.join(run.dir, "parameters.json"), encoding="utf-8") as f:
                    params = json.load(f).get("data", {})
            except FileNotFoundError:
                pass
        return params if flatten else unflatten_dict(params)
