-- regent_fence: fencing tokens checked by the protected resource itself.
-- Schema version 1. Runs in one transaction (SQL() wraps it in BEGIN and
-- COMMIT; Install runs it inside its own transaction). Idempotent; a
-- second installer waits for the first on the advisory lock below.

SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('regent_fence/install'));

CREATE SCHEMA IF NOT EXISTS regent_fence;
REVOKE ALL ON SCHEMA regent_fence FROM PUBLIC;

CREATE TABLE IF NOT EXISTS regent_fence.version (
	id           boolean PRIMARY KEY DEFAULT true CHECK (id),
	version      integer NOT NULL,
	installed_at timestamptz NOT NULL DEFAULT now()
);

-- Refuse to install over a schema written by a newer package.
DO $check$
DECLARE
	v integer;
BEGIN
	SELECT version INTO v FROM regent_fence.version;
	IF v > 1 THEN
		RAISE EXCEPTION 'regent_fence: schema version % is installed, newer than this package''s version 1', v
			USING ERRCODE = 'RF003',
			      HINT = 'install with the newer regent (or fence package) that wrote it; never downgrade the schema';
	END IF;
END
$check$;

-- One row: the settings claim reads.
CREATE TABLE IF NOT EXISTS regent_fence.settings (
	id               boolean PRIMARY KEY DEFAULT true CHECK (id),
	-- How long a claim that moves the fence waits for the transactions of
	-- older terms before ending them (the stall bound).
	stall_timeout_ms integer NOT NULL DEFAULT 5000 CHECK (stall_timeout_ms > 0),
	-- Rounds of waiting and ending older transactions before a mover
	-- waits without the stall timeout.
	stall_rounds     integer NOT NULL DEFAULT 10 CHECK (stall_rounds > 0)
);
INSERT INTO regent_fence.settings (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

-- The fence: one row per key.
CREATE TABLE IF NOT EXISTS regent_fence.fence (
	key         text PRIMARY KEY CHECK (key <> ''),
	term        bigint NOT NULL CHECK (term >= 0),
	owner       text NOT NULL CHECK (owner <> ''),
	owner_since timestamptz NOT NULL,
	at          timestamptz NOT NULL
);

-- Refused claims, recorded by record_refusal (bounded: see there).
CREATE TABLE IF NOT EXISTS regent_fence.refusals (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at            timestamptz NOT NULL DEFAULT now(),
	key           text NOT NULL,
	term          bigint NOT NULL,
	owner         text NOT NULL,
	node          text NOT NULL,
	code          text NOT NULL CHECK (code IN ('RF001', 'RF002')),
	current_term  bigint NOT NULL,
	current_owner text NOT NULL
);
CREATE INDEX IF NOT EXISTS refusals_at ON regent_fence.refusals (at);
CREATE INDEX IF NOT EXISTS refusals_key ON regent_fence.refusals (key, id);

-- Owner changes made on purpose (transfer).
CREATE TABLE IF NOT EXISTS regent_fence.transfers (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at         timestamptz NOT NULL DEFAULT now(),
	key        text NOT NULL,
	from_owner text,
	from_term  bigint,
	to_owner   text NOT NULL,
	by         text NOT NULL
);

REVOKE ALL ON ALL TABLES IN SCHEMA regent_fence FROM PUBLIC;

-- _end_older ends the sessions whose open transactions claimed key with a
-- term older than p_term (never its own, never an equal or newer term)
-- and returns how many it signalled. Claims are visible in pg_locks
-- through the two shared advisory locks claim takes: (hash of
-- 'regent_fence/hi/'||key, high 32 bits of the term) and (hash of
-- 'regent_fence/lo/'||key, low 32 bits). A session holding several terms
-- of the key counts with the largest halves (never underestimated).
CREATE OR REPLACE FUNCTION regent_fence._end_older(p_key text, p_term bigint)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	hi_class bigint := hashtext('regent_fence/hi/' || p_key)::bigint & 4294967295;
	lo_class bigint := hashtext('regent_fence/lo/' || p_key)::bigint & 4294967295;
	h record;
	n integer := 0;
BEGIN
	FOR h IN
		SELECT l.pid,
		       (max(l.objid::bigint) FILTER (WHERE l.classid::bigint = hi_class) << 32)
		         | max(l.objid::bigint) FILTER (WHERE l.classid::bigint = lo_class) AS term
		FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint IN (hi_class, lo_class)
		  AND l.pid <> pg_backend_pid()
		GROUP BY l.pid
	LOOP
		CONTINUE WHEN h.term IS NULL OR h.term >= p_term;
		BEGIN
			IF pg_terminate_backend(h.pid) THEN
				n := n + 1;
				RAISE WARNING 'regent_fence: ended session % holding key "%" at stale term % for term %', h.pid, p_key, h.term, p_term;
			END IF;
		EXCEPTION WHEN insufficient_privilege THEN
			RAISE EXCEPTION 'regent_fence: key "%": cannot end session % of stale term % that blocks term %: %', p_key, h.pid, h.term, p_term, SQLERRM
				USING ERRCODE = 'lock_not_available',
				      HINT = 'the owner of the regent_fence functions needs membership in pg_signal_backend (or superuser to end superuser sessions)';
		END;
	END LOOP;
	RETURN n;
END
$fn$;

-- _advance records p_term for p_key: inserts the first row, or moves an
-- older term of the same owner forward (exclusive row lock). It waits for
-- the transactions that hold the row at most stall_timeout_ms at a time,
-- ending those of older terms in between; when only equal or newer terms
-- hold it, it waits as the caller's lock_timeout allows. Returns whether
-- it wrote; false means the row changed meanwhile (the caller re-reads).
CREATE OR REPLACE FUNCTION regent_fence._advance(p_key text, p_term bigint, p_owner text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	s regent_fence.settings%ROWTYPE;
	caller_timeout text := current_setting('lock_timeout');
	bounded boolean := true;
	n bigint;
BEGIN
	SELECT * INTO s FROM regent_fence.settings;
	FOR i IN 1 .. s.stall_rounds + 1 LOOP
		IF i > s.stall_rounds THEN
			bounded := false;
		END IF;
		BEGIN
			IF bounded THEN
				PERFORM set_config('lock_timeout', s.stall_timeout_ms || 'ms', true);
			END IF;
			IF EXISTS (SELECT 1 FROM regent_fence.fence WHERE key = p_key) THEN
				UPDATE regent_fence.fence SET term = p_term, at = now()
				WHERE key = p_key AND term < p_term AND owner = p_owner;
			ELSE
				INSERT INTO regent_fence.fence (key, term, owner, owner_since, at)
				VALUES (p_key, p_term, p_owner, now(), now())
				ON CONFLICT (key) DO NOTHING;
			END IF;
			GET DIAGNOSTICS n = ROW_COUNT;
			PERFORM set_config('lock_timeout', caller_timeout, true);
			RETURN n > 0;
		EXCEPTION WHEN lock_not_available THEN
			-- The block's subtransaction restored lock_timeout.
			IF NOT bounded THEN
				RAISE;
			END IF;
			IF regent_fence._end_older(p_key, p_term) = 0 THEN
				bounded := false;
			END IF;
		END;
	END LOOP;
	RETURN false; -- not reached
END
$fn$;

-- claim fences the caller's transaction: see the package documentation of
-- github.com/regentd/regent/fence. Returns the term now recorded.
CREATE OR REPLACE FUNCTION regent_fence.claim(p_key text, p_term bigint, p_owner text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	r regent_fence.fence%ROWTYPE;
	lo bigint;
BEGIN
	IF p_key IS NULL OR p_key = '' THEN
		RAISE EXCEPTION 'regent_fence: claim: empty key' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_term IS NULL OR p_term < 0 THEN
		RAISE EXCEPTION 'regent_fence: claim of key "%": invalid term %', p_key, p_term USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_owner IS NULL OR p_owner = '' THEN
		RAISE EXCEPTION 'regent_fence: claim of key "%": empty owner', p_key USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- Make this transaction's term visible to movers (see _end_older).
	lo := p_term & 4294967295;
	PERFORM pg_advisory_xact_lock_shared(hashtext('regent_fence/hi/' || p_key), (p_term >> 32)::integer);
	PERFORM pg_advisory_xact_lock_shared(hashtext('regent_fence/lo/' || p_key),
		(CASE WHEN lo >= 2147483648 THEN lo - 4294967296 ELSE lo END)::integer);

	FOR attempt IN 1 .. 8 LOOP
		SELECT * INTO r FROM regent_fence.fence WHERE key = p_key;
		IF FOUND AND r.owner <> p_owner THEN
			RAISE EXCEPTION 'regent_fence: foreign owner "%" for key "%": the resource belongs to owner "%" since %', p_owner, p_key, r.owner, r.owner_since
				USING ERRCODE = 'RF002';
		END IF;
		IF NOT FOUND OR r.term < p_term THEN
			IF regent_fence._advance(p_key, p_term, p_owner) THEN
				RETURN p_term;
			END IF;
			CONTINUE;
		END IF;
		-- Same or newer term recorded: re-read under a shared lock (after a
		-- wait, READ COMMITTED returns the newest version).
		SELECT * INTO r FROM regent_fence.fence WHERE key = p_key FOR SHARE;
		CONTINUE WHEN NOT FOUND;
		IF r.owner <> p_owner THEN
			RAISE EXCEPTION 'regent_fence: foreign owner "%" for key "%": the resource belongs to owner "%" since %', p_owner, p_key, r.owner, r.owner_since
				USING ERRCODE = 'RF002';
		END IF;
		IF r.term = p_term THEN
			RETURN p_term;
		END IF;
		IF r.term > p_term THEN
			RAISE EXCEPTION 'regent_fence: stale term % for key "%": the resource already accepted term %', p_term, p_key, r.term
				USING ERRCODE = 'RF001';
		END IF;
		-- Moved back (a transfer reset the term): decide again.
	END LOOP;
	RAISE EXCEPTION 'regent_fence: claim of key "%" at term %: the fence kept changing; retry the transaction', p_key, p_term
		USING ERRCODE = 'serialization_failure';
END
$fn$;

-- record_refusal records a refused claim; call it in a short transaction
-- of its own after claim raised RF001 or RF002. The code is decided here
-- from the fence row: RF002 when the owner differs, else RF001. Nothing is
-- recorded for a key without a row. The log keeps 7 days and at most 1000
-- entries per key.
CREATE OR REPLACE FUNCTION regent_fence.record_refusal(p_key text, p_term bigint, p_owner text, p_node text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	r regent_fence.fence%ROWTYPE;
	cut bigint;
BEGIN
	IF p_key IS NULL OR p_key = '' OR p_term IS NULL OR p_term < 0 OR p_owner IS NULL OR p_owner = '' THEN
		RAISE EXCEPTION 'regent_fence: record_refusal: key and owner must be non-empty and term non-negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO r FROM regent_fence.fence WHERE key = p_key;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	INSERT INTO regent_fence.refusals (key, term, owner, node, code, current_term, current_owner)
	VALUES (p_key, p_term, p_owner, coalesce(p_node, ''),
	        CASE WHEN r.owner <> p_owner THEN 'RF002' ELSE 'RF001' END, r.term, r.owner);
	DELETE FROM regent_fence.refusals WHERE at < now() - interval '7 days';
	SELECT id INTO cut FROM regent_fence.refusals WHERE key = p_key ORDER BY id DESC OFFSET 1000 LIMIT 1;
	IF FOUND THEN
		DELETE FROM regent_fence.refusals WHERE key = p_key AND id <= cut;
	END IF;
END
$fn$;

-- transfer gives p_key to owner p_to on purpose, recorded with p_by. The
-- term is reset to 0 (terms of different deployments do not compare), so
-- the new owner's first claim passes at any term. A transfer to the
-- current owner keeps the term. It waits for the transactions that hold
-- the key.
CREATE OR REPLACE FUNCTION regent_fence.transfer(p_key text, p_to text, p_by text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	r regent_fence.fence%ROWTYPE;
BEGIN
	IF p_key IS NULL OR p_key = '' OR p_to IS NULL OR p_to = '' OR p_by IS NULL OR p_by = '' THEN
		RAISE EXCEPTION 'regent_fence: transfer: key, new owner and "by" must be non-empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO regent_fence.fence (key, term, owner, owner_since, at)
	VALUES (p_key, 0, p_to, now(), now())
	ON CONFLICT (key) DO NOTHING;
	IF FOUND THEN
		INSERT INTO regent_fence.transfers (key, to_owner, by) VALUES (p_key, p_to, p_by);
		RETURN;
	END IF;
	SELECT * INTO r FROM regent_fence.fence WHERE key = p_key FOR UPDATE;
	IF r.owner <> p_to THEN
		UPDATE regent_fence.fence SET owner = p_to, term = 0, owner_since = now(), at = now() WHERE key = p_key;
	END IF;
	INSERT INTO regent_fence.transfers (key, from_owner, from_term, to_owner, by)
	VALUES (p_key, r.owner, r.term, p_to, p_by);
END
$fn$;

REVOKE ALL ON FUNCTION regent_fence._end_older(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION regent_fence._advance(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION regent_fence.claim(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION regent_fence.record_refusal(text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION regent_fence.transfer(text, text, text) FROM PUBLIC;

INSERT INTO regent_fence.version (id, version) VALUES (true, 1)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, installed_at = now()
WHERE regent_fence.version.version < excluded.version;
