"""The one base class for errors a user can fix from their message alone."""


class SupertinyError(Exception):
    """A problem with input or configuration; the message names the setting, file or row.

    ``kedro run`` (see ``supertiny.cli``) prints these as one line instead of a traceback.
    """


class ConfigError(SupertinyError, ValueError):
    """A setting in conf/ that cannot work; the message names the setting and what to set."""


class DataError(SupertinyError):
    """Input data that cannot work as a whole (an empty source, one whose rows were mostly
    rejected); the message names the dataset and what was found."""
