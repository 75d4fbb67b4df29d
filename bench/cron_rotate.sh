#!/usr/bin/env bash
# A cron-style rotation of one Encord service-account key, done the usual way with
# ssh-keygen, openssl, curl, jq and the bao CLI: the baseline of `python -m bench.cron`.
#
# Environment:
#   ENCORD_DOMAIN        Encord API base (here: the sandbox), e.g. http://127.0.0.1:8900
#   SA                   the service account hash
#   ACCOUNT              the account's name (for the key title)
#   BAO_ADDR, BAO_TOKEN  OpenBao (or VAULT_ADDR/VAULT_TOKEN for a `vault` binary)
#   KV_MOUNT             KV v2 mount (default: secret)
#   KV_PATH              the consumer path, e.g. encord/NAME/ssh-key, with the fields rotator
#                        writes (private_key, public_key, key_id, key_hash, issued_at, ...)
#
# What it does, like rotator: read the current key from Vault; generate a new key; register
# it at Encord (signed by the current key); verify it (a request signed by the new key);
# store it in Vault; delete the old key at Encord. What it does not do, unlike rotator: no
# state record, no check-and-set, no grace period, no recovery from a crash half-way.
#
# Signing (docs/encord-contract.md): openssl 3 signs raw Ed25519
# (`pkeyutl -sign -rawin`) but reads Ed25519 keys only as PKCS#8, while ssh-keygen (OpenSSH 9)
# writes and reads them only in the OpenSSH format. Both formats hold the same 32-byte seed:
# in an unencrypted one-key OpenSSH file it is at byte offset 161 of the base64-decoded body,
# and a PKCS#8 Ed25519 key is the fixed DER prefix 302e020100300506032b657004220420 followed
# by the seed. `to_pkcs8` does that conversion; the new key's conversion is checked against
# its public key.
set -euo pipefail
umask 077

: "${ENCORD_DOMAIN:?}" "${SA:?}" "${ACCOUNT:?}" "${BAO_ADDR:?}" "${BAO_TOKEN:?}" "${KV_PATH:?}"
KV_MOUNT="${KV_MOUNT:-secret}"
BAO="${BAO:-bao}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
    echo "cron_rotate: $*" >&2
    exit 1
}

# OpenSSH Ed25519 private key file -> PKCS#8 PEM file.
to_pkcs8() {
    {
        printf '302e020100300506032b657004220420'
        grep -v -- '-----' "$1" | base64 -d | tail -c +162 | head -c 32 | xxd -p -c 64
    } | xxd -r -p | openssl pkey -inform DER -out "$2"
}

# One signed Encord request: encord METHOD TARGET BODY KEY.pem KEYID
# Prints the HTTP status; the answer's body is left in $work/answer.
encord() {
    local method=$1 target=$2 body=$3 key=$4 keyid=$5
    local digest params sig
    local -a data=()
    digest="sha-256=:$(printf '%s' "$body" | openssl dgst -sha256 -binary | base64 -w0):"
    params="(\"@method\" \"@request-target\" \"content-digest\");created=$(date +%s)"
    params+=";keyid=\"$keyid\";alg=\"ed25519\""
    printf '"@method": %s\n"@request-target": %s\n"content-digest": %s\n"@signature-params": %s' \
        "$method" "$target" "$digest" "$params" >"$work/base"
    sig="$(openssl pkeyutl -sign -inkey "$key" -rawin -in "$work/base" | base64 -w0)"
    if [[ -n $body ]]; then
        data=(-H "Content-Type: application/json" --data-binary "$body")
    fi
    curl -sS -o "$work/answer" -w '%{http_code}' -X "$method" \
        -H "Content-Digest: $digest" \
        -H "Signature-Input: encord-sig=$params" \
        -H "Signature: encord-sig=:$sig:" \
        "${data[@]}" "$ENCORD_DOMAIN$target"
}

# 1. The current key, from Vault.
"$BAO" kv get -mount="$KV_MOUNT" -format=json "$KV_PATH" >"$work/old.json"
jq -r .data.data.private_key "$work/old.json" >"$work/old"
old_id="$(jq -r .data.data.key_id "$work/old.json")"
old_hash="$(jq -r .data.data.key_hash "$work/old.json")"
to_pkcs8 "$work/old" "$work/old.pem"

# 2. A new key.
ssh-keygen -q -t ed25519 -N '' -C "cron:$ACCOUNT" -f "$work/new"
to_pkcs8 "$work/new" "$work/new.pem"
new_id="$(awk '{print $2}' "$work/new.pub" | base64 -d | tail -c 32 | xxd -p -c 64)"
check="$(openssl pkey -in "$work/new.pem" -pubout -outform DER | tail -c 32 | xxd -p -c 64)"
[[ $check == "$new_id" ]] || fail "OpenSSH -> PKCS#8 conversion gave another key"

# 3. Register it, signed by the current key.
keys="/v2/public/service-accounts/$SA/keys"
body="$(jq -cn --arg t "cron:$ACCOUNT:$(date -u +%Y%m%dT%H%M%SZ)" \
    --arg k "$(cat "$work/new.pub")" '{title: $t, publicKey: $k}')"
status="$(encord POST "$keys" "$body" "$work/old.pem" "$old_id")"
[[ $status == 200 ]] || fail "register: HTTP $status"
new_hash="$(jq -r .keyHash "$work/answer")"

# 4. Verify: a request signed by the new key authenticates (403 = authenticated).
verified=""
for attempt in 1 2 3 4 5; do
    status="$(encord GET /v2/public/organisation/organisation-tags "" "$work/new.pem" "$new_id")"
    if [[ $status == 200 || $status == 403 ]]; then
        verified=yes
        break
    fi
    sleep "$attempt"
done
if [[ -z $verified ]]; then
    encord DELETE "$keys/$new_hash" "" "$work/old.pem" "$old_id" >/dev/null || true
    fail "the new key never authenticated; deleted it"
fi

# 5. Store it where consumers read it.
"$BAO" kv put -mount="$KV_MOUNT" "$KV_PATH" \
    private_key=@"$work/new" \
    public_key="$(cat "$work/new.pub")" \
    key_id="$new_id" \
    key_hash="$new_hash" \
    issued_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    expires_at="$(date -u -d '+90 days' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null

# 6. Delete the old key, signed by the new one.
status="$(encord DELETE "$keys/$old_hash" "" "$work/new.pem" "$new_id")"
[[ $status == 204 || $status == 404 ]] || fail "revoke: HTTP $status"
echo "rotated $ACCOUNT: ${old_id:0:12} -> ${new_id:0:12}"
