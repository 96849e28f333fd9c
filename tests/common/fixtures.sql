-- Fixtures for the end-to-end tests. Loaded once per test binary into database `app` as the superuser.
CREATE ROLE reader LOGIN;
CREATE ROLE writer LOGIN;
GRANT CONNECT ON DATABASE app TO reader, writer;

CREATE TABLE public.canary (id int PRIMARY KEY, note text NOT NULL);
INSERT INTO public.canary SELECT g, 'row ' || g FROM generate_series(1, 10) g;
CREATE TABLE public.secrets (k text);
INSERT INTO public.secrets VALUES ('top-secret');
-- A volatile function that writes: the guard must never let a read-only call run it.
CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql VOLATILE AS
  $$ INSERT INTO public.canary VALUES ((SELECT max(id) + 1 FROM public.canary), 'bumped') RETURNING id $$;
CREATE FUNCTION public.double_it(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 * 2 $$;

CREATE TABLE public.authors (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    born date
);
COMMENT ON TABLE public.authors IS 'People who write books';
CREATE TABLE public.books (
    id int PRIMARY KEY,
    author_id int NOT NULL REFERENCES public.authors(id) ON DELETE CASCADE,
    title text NOT NULL,
    price numeric(8,2) CHECK (price >= 0),
    published date
);
CREATE INDEX books_author_idx ON public.books(author_id);
INSERT INTO public.authors(name, born) VALUES ('Ursula K. Le Guin', '1929-10-21'), ('Stanisław Lem', '1921-09-12');
INSERT INTO public.books SELECT g, 1 + g % 2, 'Book ' || g, (g * 1.25)::numeric(8,2), date '1960-01-01' + g FROM generate_series(1, 250) g;
CREATE VIEW public.book_titles AS SELECT b.id, b.title, a.name AS author FROM public.books b JOIN public.authors a ON a.id = b.author_id;

CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN public.positive_int AS int CHECK (VALUE > 0);
CREATE TYPE public.pair AS (label text, amount numeric);

GRANT USAGE ON SCHEMA public TO reader, writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.books, public.canary TO writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO writer;
