"""fanout: run Oracle RMAN backups across a fleet of hosts over SSH."""

__version__ = "0.1.0"
