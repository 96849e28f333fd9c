-- The masking fuzzer's world: personal data in masked columns of every kind of type, reached through an
-- inheritance child, partitions, views, functions written in the database and the planner's statistics.
-- Every value in a masked column is in SEEDED (mod.rs), made of runs no answer would hold by chance, nor any text of
-- pgmcp's own (Bob's note once held "nvtr", which is in aggminvtransfn, in the guard's catalog queries that
-- pg_prepared_statements lists).

DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'maskprober') THEN CREATE ROLE maskprober LOGIN; END IF;
END $$;

CREATE SCHEMA pii;

-- A type of the database's own: a connection meets it first when it reads the column, and tokio-postgres then
-- looks it up with queries of its own while PostgreSQL still prints trees for the guard.
CREATE TYPE pii.clearance AS ENUM ('clr_vqzxkwtm', 'clr_hpqzrnwd', 'clr_zmtqvkpx');
-- So are a composite type and an extension's type.
CREATE TYPE pii.postal AS (street text, code text);
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE pii.people (
    id          int PRIMARY KEY,
    name        text NOT NULL,
    city        text NOT NULL,
    email       text,
    phone       varchar(40),
    salary      numeric(12, 2),
    born        date,
    profile     jsonb,
    secret_code int,
    token       bytea,
    geo         point,
    clearance   pii.clearance,
    alias       citext,
    postal      pii.postal
);
-- An inheritance child holds masked values of its own: the parent's masks cover it.
CREATE TABLE pii.vip (tier text NOT NULL DEFAULT 'gold') INHERITS (pii.people);

CREATE TABLE pii.cards (id int NOT NULL, region text NOT NULL, holder_id int NOT NULL, card_number text)
    PARTITION BY LIST (region);
CREATE TABLE pii.cards_eu PARTITION OF pii.cards FOR VALUES IN ('europe');
CREATE TABLE pii.cards_us PARTITION OF pii.cards FOR VALUES IN ('americas');

CREATE TABLE pii.orders (id int PRIMARY KEY, person_id int NOT NULL, total numeric(8, 2) NOT NULL, note text);

INSERT INTO pii.people VALUES
  (1, 'Alice', 'Lisbon', 'kvzqmrtx.plwhgn@brqfzd.com', '+44 7700 913827', 7261938.45, '1911-07-23',
   '{"passport": "XJQW4829173", "note": "wmkrtzvq"}', 48291736, 'zqvwmpkr', '(71.4829163,-33.9172846)',
   'clr_vqzxkwtm', 'Qvzkrwtm', '(wrtzqvmk,tqxwzpvr)'),
  (2, 'Bob', 'Oslo', 'ghtwxpqz@dvlkmrsn.org', '+1 415 839 2741', 5318027.19, '1923-11-04',
   '{"passport": "KPTZ7735190", "note": "xqnwtrvk"}', 73519064, 'pltkrqwz', '(12.6617394,58.3307716)',
   'clr_hpqzrnwd', 'Mzwqtvkr', '(kvrmzwtq,zpwtvqxr)'),
  -- Alice's phone again: a value that occurs twice lands in the planner's most-common-values list.
  (3, 'Carol', 'Lisbon', 'mwqrtzkv@pxlnvq.com', '+44 7700 913827', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 'Dan', 'Quito', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO pii.vip VALUES
  (10, 'Erin', 'Rome', 'tkzvwqrp.xmlnq@vwhtzk.net', '+39 06 4928 7713', 6648213.07, '1907-02-14',
   '{"passport": "ZRVM6614827", "note": "qvtzrkmw"}', 66148273, 'xzqwvtkp', '(64.2281937,-21.9046615)',
   'clr_zmtqvkpx', 'Twzqkvrm', '(qmvtzrwk,xwrkqtzv)', 'platinum');
INSERT INTO pii.cards VALUES
  (1, 'europe', 1, '4929 7310 8452 6617'),
  (2, 'americas', 2, '5301 8846 2279 9034'),
  (3, 'europe', 10, '3714 496353 98431');
INSERT INTO pii.orders VALUES
  (1, 1, 19.90, 'first order'), (2, 1, 42.00, NULL), (3, 2, 7.50, 'gift'), (4, 10, 120.00, 'party');

CREATE VIEW pii.people_contacts AS SELECT id, name, email, phone FROM pii.people;
-- Every column, through a join: plain references travel through it.
CREATE VIEW pii.people_everything AS
    SELECT p.*, o.total FROM pii.people p LEFT JOIN pii.orders o ON o.person_id = p.id AND o.id = 1;
CREATE VIEW pii.people_nested AS SELECT * FROM pii.people_everything;
-- Views that filter on, or compute from, masked columns: reading them would use the values.
CREATE VIEW pii.people_filtered AS SELECT id, name FROM pii.people WHERE email LIKE '%.com';
CREATE VIEW pii.people_computed AS SELECT id, lower(email) AS email_lower, salary * 2 AS double_salary FROM pii.people;

-- Functions written in the database that hand masked values out; the profile trusts them as side-effect free.
CREATE FUNCTION pii.email_of(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT email FROM pii.people WHERE id = $1 $$;
CREATE FUNCTION pii.people_rows() RETURNS SETOF pii.people LANGUAGE sql STABLE AS $$ SELECT * FROM pii.people $$;

-- Extended statistics keep most-common value combinations, masked ones included.
CREATE STATISTICS pii.people_mcv (mcv) ON email, phone, city FROM pii.people;

GRANT USAGE ON SCHEMA pii TO maskprober;
GRANT SELECT ON ALL TABLES IN SCHEMA pii TO maskprober;

-- Statistics now: histograms and most-common values hold seeded values.
ANALYZE;
