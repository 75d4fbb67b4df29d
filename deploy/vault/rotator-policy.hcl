# Least-privilege policy for rotator, written for the DEFAULT layout: KV v2 mount `secret`
# (ROTATOR_VAULT_MOUNT) and prefix `encord` (ROTATOR_VAULT_PREFIX). With another mount or
# prefix, replace `secret/` and `/encord/` in the paths below accordingly.
#
#   bao policy write rotator deploy/vault/rotator-policy.hcl
#   bao token create -policy=rotator -period=24h      # renewed by rotator (renew-self)
#
# It grants exactly the Vault API calls rotator/adapters/vault/ makes, and nothing outside the
# prefix: tests/test_deploy.py runs a bootstrap, rotations and the daemon under a token
# holding only this policy (no `default` policy), and proves reads and writes elsewhere,
# policy reads and token creation are denied.
#
# The trailing `/*` matters: `secret/data/encord*` would also match `encord-other/...`.

# Every credential, the state record, the per-account lease and the incoming path (a key a
# person hands over, key-intake-policy.hcl): read the newest or any older version
# (GET data/...?version=N); write a new version, always check-and-set (POST data/...:
# `create` for a new path, `update` for the next version). No delete: rotator never
# soft-deletes a version.
path "secret/data/encord/*" {
  capabilities = ["create", "read", "update"]
}

# Destroy given versions for good (POST destroy/...): once a key is revoked, the older
# versions of the consumer paths and of the state record that still hold its private key
# are destroyed; once a handed-over key is taken (or refused), every version of the incoming
# path is. It destroys data only: the path, its metadata and its other versions stay.
path "secret/destroy/encord/*" {
  capabilities = ["update"]
}

# No `metadata/` at all: with it, rotator's own token could `kv metadata delete` a consumer
# path (every version gone, irreversibly) or set `delete-version-after=1s` on it. rotator
# reads only the versions it wrote, through data/.

# The mount's KV settings (max_versions, cas_required, delete_version_after), read at
# start-up to refuse settings that would break rotator's promises. Read-only.
path "secret/config" {
  capabilities = ["read"]
}

# The start-up check (VaultStore.check). The `default` policy grants these too; they are
# repeated so that a token made with -no-default-policy still works.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# `rotator doctor` asks which of the capabilities above this token holds (POST
# sys/capabilities-self with the paths; it reads the token's own ACL and changes nothing).
# The `default` policy grants it too; without it doctor warns that it could not ask.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Not listed on purpose: `sys/internal/ui/mounts/secret` (the check that the mount is KV
# v2). Vault answers it to any token that holds a capability under the mount, which the
# paths above give.
