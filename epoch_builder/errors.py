"""The one error type the CLI turns into a clean one-line message."""


class EpochBuilderError(Exception):
    """A user-facing failure: bad input, refused action, missing artifact.

    The message is one line and names the file, row, key or parameter and,
    where it applies, the allowed values.
    """
