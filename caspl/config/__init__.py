from caspl.config.defaults import get_cfg_default, register_config

__all__ = ["get_cfg_default", "register_config"]
