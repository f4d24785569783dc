//! RELIABILITY.md's tables are written by the tests that measure them: each test owns a
//! section between `<!-- NAME:begin -->` and `<!-- NAME:end -->` and rewrites it every run.

use std::sync::Mutex;

/// Replace section `name` of RELIABILITY.md with `rows` (appending it if missing).
pub fn write_section(name: &str, rows: &[String]) {
    static FILE: Mutex<()> = Mutex::new(());
    let _lock = FILE.lock().unwrap_or_else(|e| e.into_inner());
    let path = super::workspace_root().join("RELIABILITY.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let body = rows.join("\n");
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{begin}\n{body}\n{}", &text[..b], &text[e..]),
        _ => format!("{text}{begin}\n{body}\n{end}\n"),
    };
    std::fs::write(&path, updated).unwrap();
    for row in rows {
        println!("{row}");
    }
}
