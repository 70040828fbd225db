"""wormwatch: find bot-worm-infected hosts from DNS queries and SMB SYNs."""

__version__ = "0.1.0"
