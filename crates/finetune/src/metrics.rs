//! Accuracy, macro-F1 and the majority-class rate.

/// Fraction of predictions equal to the labels.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

/// Unweighted mean over classes of F1; a class with no predictions and no gold counts as 0
/// only if it occurs in either (classes absent from both are skipped).
pub fn macro_f1(pred: &[usize], gold: &[usize], n_classes: usize) -> f64 {
    let mut total = 0.0;
    let mut counted = 0;
    for c in 0..n_classes {
        let tp = pred
            .iter()
            .zip(gold)
            .filter(|(p, g)| **p == c && **g == c)
            .count() as f64;
        let n_pred = pred.iter().filter(|p| **p == c).count() as f64;
        let n_gold = gold.iter().filter(|g| **g == c).count() as f64;
        if n_pred + n_gold == 0.0 {
            continue;
        }
        counted += 1;
        total += 2.0 * tp / (n_pred + n_gold);
    }
    if counted == 0 {
        0.0
    } else {
        total / counted as f64
    }
}

/// Accuracy of always predicting the most frequent class of `gold`.
pub fn majority_rate(gold: &[usize], n_classes: usize) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let mut counts = vec![0usize; n_classes];
    for &g in gold {
        counts[g] += 1;
    }
    *counts.iter().max().unwrap_or(&0) as f64 / gold.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let gold = [0, 0, 1, 2];
        let pred = [0, 1, 1, 1];
        assert_eq!(accuracy(&pred, &gold), 0.5);
        // F1: class 0 = 2·1/(1+2) = 2/3, class 1 = 2·1/(3+1) = 1/2, class 2 = 0.
        assert!((macro_f1(&pred, &gold, 3) - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(majority_rate(&gold, 3), 0.5);
    }
}
