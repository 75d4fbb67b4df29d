# A PERSON who hands rotator a key created in the Encord UI (docs/commands.md, "Manual registration"):
# may write the downloaded file to any account's incoming path, and read nothing, not even
# that path. Default mount `secret` and prefix `encord`: change the path for yours (setup.sh
# does).
#
#   bao policy write encord-key-intake deploy/vault/key-intake-policy.hcl
#   bao token create -policy=encord-key-intake -ttl=1h
#   bao kv put -mount=secret encord/alpha/incoming private_key=@downloaded-key-file
#
# `+` is exactly one path segment: any account NAME, and under it only `incoming`.
# create: the first write to the path; update: every later one (a new version). No read, no
# list, no delete, no metadata: a person who may hand a key over cannot read back the one
# handed over before, nor rotator's keys. rotator reads the key at its next check and
# destroys every version of the path (rotator-policy.hcl's destroy/ grant).
path "secret/data/encord/+/incoming" {
  capabilities = ["create", "update"]
}
