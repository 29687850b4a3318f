//! Tables as etcd's tools print them with `-w table` (olekukonko/tablewriter as etcdctl
//! configures it: upper-case centered headers, right-aligned cells).

/// A table laid out as tablewriter does with its default borders.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    widths: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str], rows: Vec<Vec<String>>) -> Table {
        let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(display_width(cell));
            }
        }
        Table {
            header,
            rows,
            widths,
        }
    }

    fn separator(&self) -> String {
        let mut line = String::from("+");
        for width in &self.widths {
            line.push_str(&"-".repeat(width + 2));
            line.push('+');
        }
        line.push('\n');
        line
    }

    pub fn render(&self) -> String {
        let mut out = self.separator();
        out.push('|');
        for (cell, width) in self.header.iter().zip(&self.widths) {
            let gap = width - display_width(cell);
            let left = gap / 2;
            out.push_str(&format!(
                " {}{}{} |",
                " ".repeat(left),
                cell,
                " ".repeat(gap - left)
            ));
        }
        out.push('\n');
        out.push_str(&self.separator());
        for row in &self.rows {
            out.push('|');
            for (cell, width) in row.iter().zip(&self.widths) {
                let gap = width - display_width(cell);
                out.push_str(&format!(" {}{} |", " ".repeat(gap), cell));
            }
            out.push('\n');
        }
        out.push_str(&self.separator());
        out
    }
}

fn display_width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_like_tablewriter() {
        let table = Table::new(
            &["endpoint", "hash"],
            vec![vec!["127.0.0.1:23790".into(), "559488867".into()]],
        );
        assert_eq!(
            table.render(),
            "+-----------------+-----------+\n\
             |    ENDPOINT     |   HASH    |\n\
             +-----------------+-----------+\n\
             | 127.0.0.1:23790 | 559488867 |\n\
             +-----------------+-----------+\n"
        );
    }
}
