"""Errors raised for bad input. Each message names what is wrong and how to fix it."""


class StiltsError(Exception):
    """Base class for user-facing errors; command-line tools print them without a traceback."""


class WeightsError(StiltsError):
    """A checkpoint folder or its weights do not fit the model."""


class ModelConfigError(StiltsError):
    """A Hugging Face config.json describes a model this project cannot build."""


class InputError(StiltsError):
    """An input file or argument is unusable."""
