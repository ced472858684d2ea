//! Merging runs that are each in order into one in order: the sled store's pages that
//! span several key ranges (the live index's two queues of `Accepted`, the dashboard's
//! ranges per state, the deal trees' generations).

/// The items of `runs` (each ascending, or each descending if `descending`) in that
/// order, at most `limit`. An error from a run ends the merge with it. Each item is
/// found among the runs' heads by a scan: the runs are few (at most a few dozen) and a
/// page is at most a few thousand items.
pub(super) fn merge_runs<T: Ord, E, I>(
    runs: Vec<I>,
    limit: usize,
    descending: bool,
) -> Result<Vec<T>, E>
where
    I: Iterator<Item = Result<T, E>>,
{
    let mut runs = runs;
    let mut heads: Vec<Option<T>> = Vec::with_capacity(runs.len());
    for r in runs.iter_mut() {
        heads.push(r.next().transpose()?);
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let next = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, h)))
            .reduce(|a, b| if b_first(a.1, b.1, descending) { b } else { a })
            .map(|(i, _)| i);
        let Some(i) = next else { break };
        out.extend(heads[i].take());
        heads[i] = runs[i].next().transpose()?;
    }
    Ok(out)
}

/// Whether `b` comes before `a` in the merge's order (a tie keeps `a`, the earlier run's).
fn b_first<T: Ord>(a: &T, b: &T, descending: bool) -> bool {
    if descending {
        b > a
    } else {
        b < a
    }
}

#[cfg(test)]
mod tests {
    use super::merge_runs;

    fn run(v: &[u8]) -> std::vec::IntoIter<Result<u8, &'static str>> {
        v.iter().map(|x| Ok(*x)).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn ascending_runs_merge_in_order_up_to_the_limit() {
        let runs = vec![run(&[1, 4, 9]), run(&[]), run(&[2, 3, 10]), run(&[5])];
        assert_eq!(merge_runs(runs, 100, false), Ok(vec![1, 2, 3, 4, 5, 9, 10]));
        let runs = vec![run(&[1, 4, 9]), run(&[2, 3, 10])];
        assert_eq!(merge_runs(runs, 3, false), Ok(vec![1, 2, 3]));
        assert_eq!(
            merge_runs(Vec::<std::vec::IntoIter<Result<u8, ()>>>::new(), 3, false),
            Ok(vec![])
        );
    }

    #[test]
    fn descending_runs_merge_newest_first() {
        let runs = vec![run(&[9, 4, 1]), run(&[10, 3, 2])];
        assert_eq!(merge_runs(runs, 5, true), Ok(vec![10, 9, 4, 3, 2]));
    }

    #[test]
    fn equal_items_from_two_runs_are_both_kept() {
        let runs = vec![run(&[1, 2]), run(&[2, 3])];
        assert_eq!(merge_runs(runs, 10, false), Ok(vec![1, 2, 2, 3]));
    }

    #[test]
    fn an_error_in_a_run_is_returned() {
        let runs = vec![
            vec![Ok(1), Err("bad"), Ok(3)].into_iter(),
            vec![Ok(2)].into_iter(),
        ];
        assert_eq!(merge_runs(runs, 10, false), Err("bad"));
    }
}
