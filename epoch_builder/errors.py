"""The one error type the CLI turns into a clean one-line message."""


class EpochBuilderError(Exception):
    """A user-facing failure: bad input, refused action, missing artifact.

    The message is one line and names the file, row, key or parameter and,
    where it applies, the allowed values.
    """

    exit_code = 2  # the CLI's exit status for it


class VerificationFailed(EpochBuilderError):
    """A file was read fine but fails a rule it must satisfy (verify-epoch): exit status 3, so scripts
    tell a bad Epoch File from a bad command line or a missing file."""

    exit_code = 3
