//! Markdown for summaries: the one way a table is written.

/// A Markdown table: a header row, a `|---|` rule and one line per row, each cell as given.
pub fn table<S: AsRef<str>>(header: &[S], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let line = |cells: &[&str]| format!("| {} |\n", cells.join(" | "));
    let head: Vec<&str> = header.iter().map(|h| h.as_ref()).collect();
    let mut s = line(&head);
    s += &format!("|{}\n", "---|".repeat(head.len()));
    for r in rows {
        let cells: Vec<&str> = r.iter().map(|c| c.as_str()).collect();
        s += &line(&cells);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_has_a_header_a_rule_and_rows() {
        let t = super::table(&["a", "b"], vec![vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
