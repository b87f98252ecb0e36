"""Error types users see. Each message names the file or value and what to do."""


class DataError(ValueError):
  """Input data is missing, malformed, or too small for the configured job."""


class ConfigError(ValueError):
  """A config value is invalid; the message names the field and the allowed values."""
