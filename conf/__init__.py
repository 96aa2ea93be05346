"""Hydra configs of frcnn. Installed as the package ``frcnn.conf`` (``frcnn/conf`` links here), so the
commands find them with ``config_path="pkg://frcnn.conf"`` from any working directory."""
