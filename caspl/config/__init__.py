from caspl.config.defaults import get_cfg_default, register_config
from caspl.config.setup import build_arg_parser, merge_file, setup_cfg
from caspl.config.validate import ConfigError, validate_cfg

__all__ = [
    "ConfigError",
    "build_arg_parser",
    "get_cfg_default",
    "merge_file",
    "register_config",
    "setup_cfg",
    "validate_cfg",
]
