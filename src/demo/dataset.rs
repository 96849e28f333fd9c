//! The built-in demo dataset (restaurants, customers, menus, reviews) and its least-privilege reader role.

use anyhow::Context;

use super::cluster::TempCluster;
use crate::db::quote_ident;

/// The login role `pgmcp demo` connects as: it may connect and read the demo tables, nothing else.
pub const DEMO_ROLE: &str = "pgmcp_demo";

/// Deterministic: the same rows on every load, generated in the server from hashed row numbers.
const SAMPLE_SQL: &str = include_str!("sample.sql");

/// A question the sample answers slowly on purpose: no index leads with `visited_on`, so PostgreSQL reads all
/// 100,000 reviews. index_advice finds `reviews (visited_on)` and shows the cost drop.
pub const SLOW_QUERY: &str = "select r.name, v.rating, v.title from reviews as v join restaurants as r on r.id = v.restaurant_id \
where v.visited_on = date '2024-03-15' order by v.rating desc";

/// Creates database `dbname`, loads the sample into it and grants [`DEMO_ROLE`] read access to it.
pub fn load_sample(cluster: &TempCluster, dbname: &str) -> anyhow::Result<()> {
    let database = quote_ident(dbname);
    cluster
        .psql("postgres", &format!("create database {database}"))
        .with_context(|| format!("creating database {dbname:?}"))?;
    cluster
        .psql(dbname, SAMPLE_SQL)
        .with_context(|| format!("loading the sample dataset into {dbname:?}"))?;
    cluster
        .psql(dbname, &demo_role_sql(&database))
        .with_context(|| format!("creating the read-only role {DEMO_ROLE}"))?;
    // index_advice measures with hypopg; the demo works without it (the tool then says how to install it). Its
    // own schema keeps its view out of the sample's tables.
    cluster
        .psql(
            dbname,
            &format!(
                "do $$ begin if exists (select from pg_available_extensions where name = 'hypopg') then \
                 create schema hypopg; create extension hypopg schema hypopg; grant usage on schema hypopg to {}; \
                 end if; end $$",
                quote_ident(DEMO_ROLE)
            ),
        )
        .context("creating the hypopg extension")?;
    Ok(())
}

/// A URL that logs in to `dbname` as [`DEMO_ROLE`] (password-less: relies on the cluster's default trust auth).
pub fn demo_url(cluster: &TempCluster, dbname: &str) -> String {
    let superuser_url = cluster.url(dbname);
    let after_at = superuser_url.split_once('@').map_or("", |(_, rest)| rest);
    format!("postgresql://{DEMO_ROLE}@{after_at}")
}

/// Grants exactly what a read-only agent needs. Also takes the PUBLIC defaults away (CONNECT and TEMP on
/// the database, CREATE on schema public before PostgreSQL 15) so the role's privileges are all explicit.
fn demo_role_sql(database: &str) -> String {
    let role = quote_ident(DEMO_ROLE);
    let role_literal = DEMO_ROLE.replace('\'', "''");
    format!(
        "do $$ begin
             if not exists (select from pg_roles where rolname = '{role_literal}') then
                 create role {role} login;
             end if;
         end $$;
         revoke all on database {database} from public;
         revoke create on schema public from public;
         grant connect on database {database} to {role};
         grant usage on schema public to {role};
         grant select on all tables in schema public to {role};"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{DEMO_DATABASE, start_demo};

    fn count(cluster: &TempCluster, sql: &str) -> i64 {
        let output = cluster.psql(DEMO_DATABASE, sql).expect("query");
        output
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {output:?}"))
    }

    /// One test for the whole dataset: loading it is the expensive part, so it happens once.
    #[tokio::test]
    async fn start_demo_loads_a_related_commented_dataset_for_a_read_only_role() {
        let started = std::time::Instant::now();
        let demo = start_demo().expect("start demo");
        eprintln!("demo ready in {:?}", started.elapsed());
        let cluster = &demo.cluster;

        assert_eq!(count(cluster, "select count(*) from cuisines"), 16);
        assert_eq!(count(cluster, "select count(*) from restaurants"), 5000);
        assert_eq!(count(cluster, "select count(*) from customers"), 20000);
        assert!(count(cluster, "select count(*) from menu_items") >= 25000);
        assert_eq!(count(cluster, "select count(*) from reviews"), 100000);
        assert_eq!(count(cluster, "select count(*) from orders"), 60000);
        assert_eq!(
            count(
                cluster,
                "select count(*) from pg_constraint where contype = 'f'"
            ),
            6
        );
        // Contact details to mask (examples/governed.toml): every email, most phone numbers, all distinct.
        assert_eq!(
            count(
                cluster,
                "select count(*) from customers where phone !~ '^\\+[0-9]{1,3} [0-9]{3} [0-9]{7}$'"
            ),
            0
        );
        assert!(count(cluster, "select count(phone) from customers") >= 17000);
        assert_eq!(
            count(
                cluster,
                "select count(*) from orders o left join customers c on c.id = o.customer_id \
                 where c.id is null or o.total <= 0"
            ),
            0
        );
        assert_eq!(
            count(cluster, "select count(*) from restaurant_ratings"),
            5000
        );
        assert_eq!(
            count(cluster, "select sum(review_count) from restaurant_ratings"),
            100000
        );
        assert_eq!(
            count(
                cluster,
                "select count(*) from restaurant_ratings where avg_rating not between 1 and 5"
            ),
            0
        );
        assert_eq!(
            count(
                cluster,
                "select count(*) from reviews where rating not between 1 and 5"
            ),
            0
        );
        assert_eq!(
            count(cluster, "select count(distinct rating) from reviews"),
            5
        );

        let uncommented_columns = "select count(*) from information_schema.columns c
             where c.table_schema = 'public' and c.table_name <> 'restaurant_ratings'
               and col_description(format('%I.%I', c.table_schema, c.table_name)::regclass, c.ordinal_position)
                   is null";
        assert_eq!(count(cluster, uncommented_columns), 0);
        let uncommented_relations = "select count(*) from pg_class
             where relnamespace = 'public'::regnamespace and relkind in ('r', 'v')
               and obj_description(oid, 'pg_class') is null";
        assert_eq!(count(cluster, uncommented_relations), 0);

        assert_eq!(demo.url, demo_url(cluster, DEMO_DATABASE));
        assert_eq!(
            demo.url,
            format!(
                "postgresql://pgmcp_demo@127.0.0.1:{}/restaurants",
                cluster.port()
            )
        );
        let as_demo =
            |sql: &str| cluster.psql(DEMO_DATABASE, &format!("set role {DEMO_ROLE}; {sql}"));
        assert_eq!(
            as_demo("select count(*) > 0 from restaurant_ratings").expect("select"),
            "t\n"
        );
        let denied =
            as_demo("insert into cuisines (name, description, dishes) values ('x', 'y', '{}')")
                .expect_err("insert must be denied");
        assert!(
            format!("{denied:#}").contains("permission denied"),
            "{denied:#}"
        );
        assert!(as_demo("create table public.scratch (id int)").is_err());
        assert!(as_demo("create temporary table scratch (id int)").is_err());

        let (client, connection) = tokio_postgres::connect(&demo.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let row = client
            .query_one("select current_user::text, count(*) from reviews", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), DEMO_ROLE);
        assert_eq!(row.get::<_, i64>(1), 100000);
        let err = client
            .execute("delete from reviews", &[])
            .await
            .expect_err("delete must be denied");
        let code = err.as_db_error().map(|db| db.code().clone());
        assert_eq!(
            code,
            Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
        );
    }
}
