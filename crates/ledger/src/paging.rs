//! Pages of a list read one row past the page: a store asked for `limit + 1` rows, and the row
//! past the page says whether there is a next one.

/// Cuts `rows` (a read of at most `limit + 1`) to `limit`, and returns the next page's cursor,
/// taken from the page's last row by `cursor`, when a row was left over.
pub fn cut_page<T, C>(rows: &mut Vec<T>, limit: u32, cursor: impl FnOnce(&T) -> C) -> Option<C> {
    let limit = limit as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    if more { rows.last().map(cursor) } else { None }
}

#[cfg(test)]
mod tests {
    use super::cut_page;

    #[test]
    fn a_row_past_the_page_gives_the_cursor_of_the_next() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(cut_page(&mut rows, 2, |r| *r), Some(2));
        assert_eq!(rows, [1, 2]);
        let mut rows = vec![1, 2];
        assert_eq!(cut_page(&mut rows, 2, |r| *r), None, "a full last page");
        assert_eq!(rows, [1, 2]);
        let mut rows: Vec<i32> = vec![];
        assert_eq!(cut_page(&mut rows, 2, |r| *r), None);
    }
}
