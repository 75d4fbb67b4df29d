#!/usr/bin/env bash
# Prepares Vault (or OpenBao) for rotator in Kubernetes; safe to run again (each step either
# finds its work done or writes the same thing again):
#   1. a KV v2 secrets engine at ROTATOR_VAULT_MOUNT (enabled if absent; a mount there of
#      another kind or KV version stops the script, nothing is converted);
#   2. the policies rotator-policy.hcl (as VAULT_POLICY), consumer-policy.hcl (as
#      encord-consumer-alpha) and key-intake-policy.hcl (as encord-key-intake, for the people
#      who hand over keys made in the Encord UI), their paths moved to
#      ROTATOR_VAULT_MOUNT/ROTATOR_VAULT_PREFIX;
#   3. the kubernetes auth method at VAULT_K8S_MOUNT (enabled if absent), configured to
#      review service-account tokens with the cluster's TokenReview API;
#   4. the role VAULT_K8S_ROLE: only the ServiceAccount K8S_SERVICE_ACCOUNT in K8S_NAMESPACE,
#      with a token for K8S_AUDIENCE, gets a token holding VAULT_POLICY (and not `default`).
#
# Needs the `bao` (or `vault`) CLI, VAULT_ADDR and a VAULT_TOKEN allowed to do the above.
#
#   required   K8S_HOST                     the Kubernetes API, e.g. https://203.0.113.7:6443
#              K8S_CA_CERT_FILE             PEM file of the CA that signed the API's certificate
#              K8S_TOKEN_REVIEWER_JWT_FILE  a token of a ServiceAccount bound to the ClusterRole
#                                           system:auth-delegator (may call TokenReview)
#              K8S_NAMESPACE                the namespace rotator runs in
#   optional   K8S_SERVICE_ACCOUNT (rotator)   K8S_AUDIENCE (vault: deployment.yaml's audience)
#              VAULT_K8S_MOUNT (kubernetes)    VAULT_K8S_ROLE (rotator)
#              VAULT_POLICY (rotator)          ROTATOR_VAULT_MOUNT (secret)
#              ROTATOR_VAULT_PREFIX (encord)   VAULT_TOKEN_TTL (1h)   VAULT_TOKEN_MAX_TTL (24h)
#              VAULT_CLI (bao if on PATH, else vault)
#
# The reviewer JWT and the CA are read from their files by the CLI (`name=@file`): they
# never appear on a command line, and the script prints no secret.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "setup.sh: $*" >&2; exit 1; }

missing=()
for name in VAULT_ADDR K8S_HOST K8S_CA_CERT_FILE K8S_TOKEN_REVIEWER_JWT_FILE K8S_NAMESPACE; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
[ "${#missing[@]}" -eq 0 ] || die "required variables not set: ${missing[*]}"
for name in K8S_CA_CERT_FILE K8S_TOKEN_REVIEWER_JWT_FILE; do
  [ -r "${!name}" ] || die "$name: cannot read ${!name}"
done
grep -q -- "-----BEGIN CERTIFICATE-----" "$K8S_CA_CERT_FILE" \
  || die "K8S_CA_CERT_FILE: no PEM certificate in ${K8S_CA_CERT_FILE}"

sa="${K8S_SERVICE_ACCOUNT:-rotator}"
audience="${K8S_AUDIENCE:-vault}"
auth_mount="${VAULT_K8S_MOUNT:-kubernetes}"
role="${VAULT_K8S_ROLE:-rotator}"
policy="${VAULT_POLICY:-rotator}"
kv_mount="${ROTATOR_VAULT_MOUNT:-secret}"
prefix="${ROTATOR_VAULT_PREFIX:-encord}"
for value in "$auth_mount" "$kv_mount" "$prefix"; do
  [[ "$value" =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ ]] \
    || die "not a Vault path: '$value' (VAULT_K8S_MOUNT, ROTATOR_VAULT_MOUNT, ROTATOR_VAULT_PREFIX)"
done

if [ -n "${VAULT_CLI:-}" ]; then
  cli="$VAULT_CLI"
elif command -v bao >/dev/null 2>&1; then
  cli=bao
else
  cli=vault
fi
command -v "$cli" >/dev/null 2>&1 || die "the Vault CLI '$cli' is not on PATH (set VAULT_CLI)"

# A Vault read whose "not there" answer (given as a pattern of its error) is no failure:
# prints the field and returns 0, returns 3 when absent; any other error stops the script.
read_field() {
  local path="$1" field="$2" absent="$3" out err
  err="$(mktemp)"
  if out="$("$cli" read -format=json -field="$field" "$path" 2>"$err")"; then
    rm -f "$err"
    printf '%s\n' "$out"
    return 0
  fi
  if grep -q -- "$absent" "$err"; then
    rm -f "$err"
    return 3
  fi
  cat "$err" >&2
  rm -f "$err"
  die "reading $path failed"
}

# 1. KV v2 at the mount.
if kv_type="$(read_field "sys/mounts/$kv_mount" type "No secret engine mount at")"; then
  kv_options="$(read_field "sys/mounts/$kv_mount" options "No secret engine mount at")"
  [ "$kv_type" = '"kv"' ] && [[ "$kv_options" == *'"version": "2"'* ]] \
    || die "$kv_mount/ is mounted but is not KV version 2 (type $kv_type, options ${kv_options//$'\n'/ }); rotator needs KV v2: pick another ROTATOR_VAULT_MOUNT"
  echo "kv: $kv_mount/ is already KV v2"
else
  [ $? -eq 3 ] || exit 1
  "$cli" secrets enable -path="$kv_mount" -version=2 -description="rotator: Encord keys" kv >/dev/null
  echo "kv: enabled KV v2 at $kv_mount/"
fi

# 2. The policies, for this mount and prefix (the files are written for secret/ and encord/).
render() {
  sed -E -e "s#^path \"secret/(data|destroy)/encord/#path \"${kv_mount}/\\1/${prefix}/#" \
    -e "s#^path \"secret/config\"#path \"${kv_mount}/config\"#" "$1"
}
render "$here/rotator-policy.hcl" | "$cli" policy write "$policy" - >/dev/null
echo "policy: wrote $policy"
render "$here/consumer-policy.hcl" | "$cli" policy write encord-consumer-alpha - >/dev/null
echo "policy: wrote encord-consumer-alpha"
render "$here/key-intake-policy.hcl" | "$cli" policy write encord-key-intake - >/dev/null
echo "policy: wrote encord-key-intake"

# 3. The kubernetes auth method and its TokenReview settings. disable_local_ca_jwt: use only
# what is given here, even when Vault itself runs in a pod.
if auth_type="$(read_field "sys/auth/$auth_mount" type "No auth engine at")"; then
  [ "$auth_type" = '"kubernetes"' ] \
    || die "$auth_mount/ is an auth method of type $auth_type, not kubernetes: set VAULT_K8S_MOUNT"
  echo "auth: $auth_mount/ is already the kubernetes method"
else
  [ $? -eq 3 ] || exit 1
  "$cli" auth enable -path="$auth_mount" -description="rotator: pods' service accounts" \
    kubernetes >/dev/null
  echo "auth: enabled kubernetes at $auth_mount/"
fi
"$cli" write "auth/$auth_mount/config" \
  kubernetes_host="$K8S_HOST" \
  kubernetes_ca_cert="@$K8S_CA_CERT_FILE" \
  token_reviewer_jwt="@$K8S_TOKEN_REVIEWER_JWT_FILE" \
  disable_local_ca_jwt=true >/dev/null
echo "auth: configured $auth_mount/ for $K8S_HOST"

# 4. The role: this ServiceAccount in this namespace, this audience, this policy only.
"$cli" write "auth/$auth_mount/role/$role" \
  bound_service_account_names="$sa" \
  bound_service_account_namespaces="$K8S_NAMESPACE" \
  audience="$audience" \
  token_policies="$policy" \
  token_no_default_policy=true \
  token_ttl="${VAULT_TOKEN_TTL:-1h}" \
  token_max_ttl="${VAULT_TOKEN_MAX_TTL:-24h}" >/dev/null
echo "auth: role $role for $K8S_NAMESPACE/$sa (audience $audience) with policy $policy"
