//! A SQLite database as the source: incremental by cursor across runs, every row once, and a
//! bad value named by its row and column.

mod common;

use std::path::Path;

use common::pipeline::*;
use common::{stderr, stdout};

fn execute(db: &Path, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    });
}

fn insert(db: &Path, orders: &[Order]) {
    let values: Vec<String> = orders
        .iter()
        .map(|o| {
            let customer = o.customer.map_or("NULL".to_string(), |c| c.to_string());
            format!(
                "({}, {customer}, {}, 'USD', {}, '{}', '{}')",
                o.id, o.amount, o.rate, o.date, o.updated
            )
        })
        .collect();
    execute(
        db,
        &format!("INSERT INTO orders VALUES {}", values.join(", ")),
    );
}

fn pipeline(project: &Project) -> std::path::PathBuf {
    let c = common::components();
    let text = format!(
        r#"name = "sqlite_orders"
on_fail = "quarantine"

[source]
kind = "sqlite"
url = "sqlite://shop.db"
table = "orders"
batch_size = 32
incremental = {{ cursor = "updated_at" }}

[[steps]]
kind = "transform"
plugin = "{}"

[[checks]]
check = "not_null"
column = "order_date"

[quarantine]
path = "quarantine"
{SQLITE_APPEND}"#,
        c.orders_transform.display()
    );
    let path = project.path("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sqlite_source_loads_new_rows_once_across_runs() {
    let project = Project::new();
    let shop = project.path("shop.db");
    execute(
        &shop,
        "CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, amount REAL, \
         currency TEXT, exchange_rate REAL, order_date TEXT, updated_at TEXT)",
    );
    let first = orders(1, 100, 0);
    insert(&shop, &first);
    let pipeline = pipeline(&project);

    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let loads = |o: &&Order| o.loads();
    let expected = once(first.iter().filter(loads).map(|o| o.id));
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected);

    let out = project.run(&pipeline, None);
    assert!(
        stdout(&out).contains("nothing new to load"),
        "{}",
        stdout(&out)
    );

    let second = orders(101, 30, 200);
    insert(&shop, &second);
    project.run(&pipeline, None);
    let all = first.iter().chain(&second).filter(loads).map(|o| o.id);
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), once(all));
}

#[test]
fn a_value_that_does_not_fit_its_column_is_named_by_row_and_column() {
    let project = Project::new();
    let shop = project.path("shop.db");
    execute(
        &shop,
        "CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, amount REAL, \
         currency TEXT, exchange_rate REAL, order_date TEXT, updated_at TEXT)",
    );
    insert(&shop, &orders(1, 10, 0));
    execute(
        &shop,
        "UPDATE orders SET customer_id = 'abc' WHERE order_id = 4",
    );
    let out = project.run(&pipeline(&project), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("sqlite shop.db table orders: row 4: column `customer_id`"),
        "{}",
        stderr(&out)
    );
}
