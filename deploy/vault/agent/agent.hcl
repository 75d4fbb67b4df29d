# Vault Agent / OpenBao agent for a CONSUMER of rotator's keys (not for rotator itself):
# keeps the file that ENCORD_SSH_KEY_FILE names holding the newest key.
#
#   vault agent -config=agent.hcl          (or: bao agent -config=agent.hcl)
#   export ENCORD_SSH_KEY_FILE=/vault/secrets/encord-ssh-key
#
# rotator keeps the previous key valid for ROTATOR_GRACE (default 24h) after a switch, so a
# re-read interval of minutes is plenty. tests/test_deploy.py runs this file with `bao agent`
# against a real OpenBao (only the address and file paths replaced).

vault {
  address = "https://vault.vault.svc:8200"
}

auto_auth {
  # A token holding deploy/vault/consumer-policy.hcl. On Kubernetes use instead:
  #   method "kubernetes" { config = { role = "encord-consumer" } }
  method "token_file" {
    config = {
      token_file_path = "/vault/token/token"
    }
  }
}

template_config {
  # KV v2 secrets have no lease to watch: re-read them this often to see a new version.
  static_secret_render_interval = "5m"
  exit_on_retry_failure         = true
}

template {
  source               = "/vault/templates/ssh-key.ctmpl"
  # The file ENCORD_SSH_KEY_FILE names; readable by the consumer's user only.
  destination          = "/vault/secrets/encord-ssh-key"
  perms                = "0600"
  error_on_missing_key = true
}
