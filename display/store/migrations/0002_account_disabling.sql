-- yizheng schema, version 2: disabling an account is the users.disabled column.
-- Version 1's admin marked a disabled account inside its stored password hash
-- ("!disabled:" + 8-character nonce + "!" before the argon2 hash; "~" + nonce + "~"
-- once re-enabled). Each disable or enable now bumps session_epoch, which the
-- session fingerprint covers, so no session from before a disable comes back.

ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;

-- Move version 1's marks into the columns; the argon2 hash is left bare.
UPDATE users SET disabled = 1, session_epoch = 1, password_hash = substr(password_hash, 20)
    WHERE password_hash LIKE '!disabled:%!$argon2%';
UPDATE users SET session_epoch = 1, password_hash = substr(password_hash, 11)
    WHERE password_hash LIKE '~%~$argon2%';
