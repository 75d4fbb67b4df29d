"""rotator: keeps Encord service-account credentials fresh in HashiCorp Vault."""

__version__ = "0.1.0"
