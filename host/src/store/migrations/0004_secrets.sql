-- Secrets the operator gave keel (providers' API keys), sealed: a 24-byte
-- nonce then XChaCha20-Poly1305 ciphertext, under the key in
-- HOME/secrets.key, with the name as associated data.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
