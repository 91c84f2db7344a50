from caspl.config.defaults import get_cfg_default, register_config
from caspl.config.setup import build_arg_parser, merge_file, setup_cfg

__all__ = ["build_arg_parser", "get_cfg_default", "merge_file", "register_config", "setup_cfg"]
