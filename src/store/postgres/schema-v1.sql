-- otpgate database schema, version 1 (see docs/fleet.md).
--
-- Run by `otpgate db init` / `db migrate` as the role otpgate_owner, inside
-- one transaction. @crypto@ is replaced by the schema that holds pgcrypto.
-- The servers' role may only EXECUTE the SECURITY DEFINER functions marked
-- "server" below; it holds no privilege on any table.

CREATE TABLE otpgate.users (
    name           text PRIMARY KEY
                   CHECK (length(name) BETWEEN 1 AND 256
                          AND name ~ '^[!-~]+$' AND name !~ '[/\\:]'
                          AND left(name, 1) NOT IN ('.', '-')),
    secret         bytea NOT NULL CHECK (length(secret) BETWEEN 10 AND 128),
    digits         smallint NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period         integer NOT NULL CHECK (period BETWEEN 1 AND 3600),
    algorithm      text NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    recovery_codes text[] NOT NULL DEFAULT '{}',
    enrolled_at    bigint NOT NULL DEFAULT 0,
    short_secret   boolean NOT NULL DEFAULT false,
    last_step      bigint,
    failures       integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until   bigint NOT NULL DEFAULT 0,
    last_success   bigint NOT NULL DEFAULT 0,
    last_failure   bigint NOT NULL DEFAULT 0,
    enrolled_on    text NOT NULL DEFAULT ''
);

-- Users an administrator allowed to enroll at their next login.
CREATE TABLE otpgate.allowances (
    name       text PRIMARY KEY,
    allowed_at timestamptz NOT NULL DEFAULT now()
);

-- Secrets removed by `otpgate reset`, kept as the files store keeps its
-- `.reset-<time>` backups.
CREATE TABLE otpgate.removed_users (
    id         bigserial PRIMARY KEY,
    removed_at timestamptz NOT NULL DEFAULT now(),
    LIKE otpgate.users
);

-- One row per decision a server asked the database for, on its clock.
CREATE TABLE otpgate.audit (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    host   text NOT NULL,
    name   text NOT NULL,
    event  text NOT NULL,
    detail text NOT NULL DEFAULT ''
);
CREATE INDEX audit_name_at ON otpgate.audit (name, at);

-- The loosest policy any server may ask for: a server's own [code] skew
-- and [lockout] settings apply only where they are stricter.
CREATE TABLE otpgate.settings (
    only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_skew         integer NOT NULL DEFAULT 1 CHECK (max_skew BETWEEN 0 AND 10),
    max_failures     integer NOT NULL DEFAULT 5 CHECK (max_failures BETWEEN 1 AND 100),
    min_lock_seconds bigint NOT NULL DEFAULT 300 CHECK (min_lock_seconds >= 1)
);
INSERT INTO otpgate.settings DEFAULT VALUES;

REVOKE ALL ON ALL TABLES IN SCHEMA otpgate FROM PUBLIC;

-- The database's clock, in whole Unix seconds.
CREATE FUNCTION otpgate.unix_now() RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT floor(extract(epoch FROM now()))::bigint $$;

-- The code of one time step (RFC 4226 dynamic truncation over pgcrypto's
-- HMAC of the big-endian step).
CREATE FUNCTION otpgate.code_at_step(p_secret bytea, p_algorithm text, p_digits integer, p_step bigint)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, @crypto@, pg_temp
AS $$
DECLARE
    mac bytea := hmac(int8send(p_step), p_secret, lower(p_algorithm));
    o integer := get_byte(mac, length(mac) - 1) & 15;
    word bigint;
BEGIN
    word := ((get_byte(mac, o) & 127)::bigint << 24)
          | (get_byte(mac, o + 1)::bigint << 16)
          | (get_byte(mac, o + 2)::bigint << 8)
          | get_byte(mac, o + 3)::bigint;
    RETURN (word % (10::bigint ^ p_digits)::bigint)::integer;
END
$$;

-- The newest step within p_skew of p_now whose code is p_code; every step
-- of the window is computed.
CREATE FUNCTION otpgate.matching_step(p_user otpgate.users, p_code integer, p_now bigint, p_skew integer)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint := p_now / p_user.period;
    found bigint;
BEGIN
    FOR step IN greatest(current - p_skew, 0) .. current + p_skew LOOP
        IF otpgate.code_at_step(p_user.secret, p_user.algorithm, p_user.digits, step) = p_code THEN
            found := step;
        END IF;
    END LOOP;
    RETURN found;
END
$$;

-- The stored recovery code hash (`sha256$SALT$HASH`, as src/recovery.rs
-- writes it) that p_reply, already normalized, matches.
CREATE FUNCTION otpgate.matching_recovery_code(p_hashes text[], p_reply bytea)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, @crypto@, pg_temp
AS $$
DECLARE
    stored text;
    parts text[];
    found text;
BEGIN
    FOREACH stored IN ARRAY p_hashes LOOP
        parts := string_to_array(stored, '$');
        CONTINUE WHEN cardinality(parts) <> 3 OR parts[1] <> 'sha256'
            OR parts[2] !~ '^([0-9a-f]{2})+$' OR parts[3] !~ '^[0-9a-f]{64}$';
        IF digest(convert_to('otpgate recovery v1', 'UTF8') || '\x00'::bytea
                  || decode(parts[2], 'hex') || p_reply, 'sha256') = decode(parts[3], 'hex')
           AND found IS NULL THEN
            found := stored;
        END IF;
    END LOOP;
    RETURN found;
END
$$;

-- server: is the user enrolled, and locked until when (NULL: not locked)?
CREATE FUNCTION otpgate.peek(p_user text, OUT enrolled boolean, OUT locked_until bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(u.*) > 0,
           max(u.locked_until) FILTER (WHERE u.locked_until > otpgate.unix_now())
      FROM otpgate.users u WHERE u.name = p_user
$$;

-- server: may the user enroll at a login (after-reset mode)?
CREATE FUNCTION otpgate.is_allowed(p_user text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM otpgate.allowances WHERE name = p_user) $$;

-- server: saves the enrollment of a user who has no secret, with
-- p_used_step (the setup code's step, at most skew steps ahead of the
-- database's clock) marked used, and ends the user's allowance. false when
-- a secret exists: the first enrollment saved wins.
CREATE FUNCTION otpgate.enroll(
    p_user text, p_secret bytea, p_digits integer, p_period integer, p_algorithm text,
    p_recovery_codes text[], p_enrolled_at bigint, p_short_secret boolean,
    p_used_step bigint, p_initial_step bigint, p_host text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    now_s bigint := otpgate.unix_now();
    skew integer := (SELECT max_skew FROM otpgate.settings);
    ceiling bigint := now_s / greatest(p_period, 1) + skew;
BEGIN
    INSERT INTO otpgate.users AS u (name, secret, digits, period, algorithm, recovery_codes,
                                    enrolled_at, short_secret, last_step, enrolled_on)
    VALUES (p_user, p_secret, p_digits, p_period, p_algorithm, p_recovery_codes,
            p_enrolled_at, p_short_secret,
            -- least() and greatest() skip NULLs: no used step stays NULL.
            greatest(CASE WHEN p_used_step IS NOT NULL THEN least(p_used_step, ceiling) END,
                     p_initial_step),
            p_host)
    ON CONFLICT (name) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM otpgate.allowances WHERE name = p_user;
    INSERT INTO otpgate.audit (host, name, event) VALUES (p_host, p_user, 'enrolled');
    RETURN true;
END
$$;

-- server: judges one reply, with the rules of src/verify.rs, on the
-- database's clock. p_code is the trimmed reply when it is all digits
-- (else NULL); p_recovery the reply normalized for a recovery code (else
-- NULL). The step is taken by one conditional UPDATE, so of two servers
-- given the same code exactly one wins; every UPDATE re-checks the lock.
-- outcome: not_enrolled, locked, code, recovery_code, malformed,
-- wrong_code or replay.
CREATE FUNCTION otpgate.verify(
    p_user text, p_code text, p_recovery bytea,
    p_skew integer, p_max_failures integer, p_lock_seconds bigint, p_host text,
    OUT outcome text, OUT step bigint, OUT failures integer, OUT locked_until bigint,
    OUT recovery_codes_left integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    now_s bigint := otpgate.unix_now();
    s otpgate.settings;
    u otpgate.users;
    skew integer;
    max_failures integer;
    lock_seconds bigint;
    matched bigint;
    used text;
BEGIN
    SELECT * INTO s FROM otpgate.settings;
    skew := least(p_skew, s.max_skew);
    max_failures := least(p_max_failures, s.max_failures);
    lock_seconds := greatest(p_lock_seconds, s.min_lock_seconds);

    SELECT * INTO u FROM otpgate.users WHERE name = p_user;
    IF NOT FOUND THEN
        outcome := 'not_enrolled';
        RETURN;
    END IF;
    IF u.locked_until > now_s THEN
        outcome := 'locked'; failures := u.failures; locked_until := u.locked_until;
        INSERT INTO otpgate.audit (host, name, event) VALUES (p_host, p_user, outcome);
        RETURN;
    END IF;

    -- A code of the right length: the newest matching step, taken if newer
    -- than the last one taken (by any server).
    outcome := 'malformed';
    IF p_code ~ '^[0-9]+$' AND length(p_code) = u.digits THEN
        outcome := 'wrong_code';
        matched := otpgate.matching_step(u, p_code::integer, now_s, skew);
        IF matched IS NOT NULL THEN
            outcome := 'replay';
            UPDATE otpgate.users AS t
               SET last_step = matched, failures = 0, locked_until = 0, last_success = now_s
             WHERE t.name = p_user AND t.secret = u.secret
               AND (t.last_step IS NULL OR t.last_step < matched)
               AND t.locked_until <= now_s;
            IF FOUND THEN
                outcome := 'code'; step := matched; failures := 0; locked_until := 0;
                INSERT INTO otpgate.audit (host, name, event, detail)
                VALUES (p_host, p_user, 'success', 'code');
                RETURN;
            END IF;
        END IF;
    END IF;

    -- Not a usable code: a recovery code, used up by one conditional UPDATE.
    IF outcome <> 'replay' AND p_recovery IS NOT NULL THEN
        used := otpgate.matching_recovery_code(u.recovery_codes, p_recovery);
        IF used IS NOT NULL THEN
            UPDATE otpgate.users AS t
               SET recovery_codes = array_remove(t.recovery_codes, used), failures = 0,
                   locked_until = 0, last_success = now_s
             WHERE t.name = p_user AND used = ANY (t.recovery_codes) AND t.locked_until <= now_s
            RETURNING cardinality(t.recovery_codes) INTO recovery_codes_left;
            IF FOUND THEN
                outcome := 'recovery_code'; failures := 0; locked_until := 0;
                INSERT INTO otpgate.audit (host, name, event, detail)
                VALUES (p_host, p_user, 'success', 'recovery_code');
                RETURN;
            END IF;
        END IF;
    END IF;

    -- A failure: counted, and the user locked at max_failures. An expired
    -- lock starts the count again.
    UPDATE otpgate.users AS t
       SET failures = CASE WHEN t.locked_until <> 0 THEN 1 ELSE t.failures + 1 END,
           locked_until = CASE WHEN (CASE WHEN t.locked_until <> 0 THEN 1 ELSE t.failures + 1 END)
                                    >= max_failures
                               THEN now_s + lock_seconds ELSE 0 END,
           last_failure = now_s
     WHERE t.name = p_user AND t.locked_until <= now_s
    RETURNING t.failures, t.locked_until INTO failures, locked_until;
    IF NOT FOUND THEN
        -- Locked (or removed) by another login since the first look.
        SELECT t.failures, t.locked_until INTO failures, locked_until
          FROM otpgate.users t WHERE t.name = p_user;
        outcome := CASE WHEN FOUND THEN 'locked' ELSE 'not_enrolled' END;
    END IF;
    INSERT INTO otpgate.audit (host, name, event, detail)
    VALUES (p_host, p_user, CASE WHEN outcome = 'locked' THEN 'locked' ELSE 'denied' END, outcome);
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA otpgate FROM PUBLIC;
