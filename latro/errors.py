"""Errors a user can fix: a bad setting, bad data, a missing file or model.

The command line prints such an error as one line, `latro: error: <message>`, and exits with
status 2; any other exception is a bug in latro and keeps its traceback.
"""


class UserError(ValueError):
    """An error in the user's input. The message names the setting, file (and line) or path."""


class SettingError(UserError):
    """A setting with a value it does not allow; `setting` is the field name, `detail` the rest."""

    def __init__(self, setting: str, detail: str):
        super().__init__(f"{setting}: {detail}")
        self.setting, self.detail = setting, detail
