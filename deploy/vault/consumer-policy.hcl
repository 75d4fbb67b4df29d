# A CONSUMER of rotator's keys (a pipeline, or the Vault Agent in deploy/vault/agent/): may
# read one account's current SSH key and nothing else. Default mount `secret`, prefix
# `encord`, account `alpha`: change the path for yours.
#
#   bao policy write encord-consumer-alpha deploy/vault/consumer-policy.hcl
path "secret/data/encord/alpha/ssh-key" {
  capabilities = ["read"]
}
