//! `results.json` (what scripts read) and `report.md` (what a person reads): this run's
//! figures beside the lab report's, with the plots.

use serde::Serialize;
use simclr_baselines::ClusteringReport;

/// What the lab report measured for a dataset (and what PyTorch reached here with its code).
pub struct Reference {
    /// Test accuracy (fraction).
    pub accuracy: f64,
    /// SimCLR pretraining seconds.
    pub pretrain_seconds: f64,
    /// Classifier seconds.
    pub classifier_seconds: f64,
    /// What the report said of the clustering baselines, if it ran them.
    pub baselines: &'static str,
    /// A note on the reference figures.
    pub note: &'static str,
}

impl Reference {
    /// The report's MNIST figures.
    pub fn mnist() -> Reference {
        Reference {
            accuracy: 0.9527,
            pretrain_seconds: 179.0,
            classifier_seconds: 37.0,
            baselines: "< 70 %",
            note: "PyTorch running the report's protocol on this machine reached 92.89 % (report \
                   recipe) and 97.40 % (both views augmented) in about 188 s; the report's \
                   baselines: k-means and GMM on raw pixels \"< 70 %\".",
        }
    }

    /// The report's CIFAR-10 figures (ResNet-18 from ImageNet weights, batch 128).
    pub fn cifar10() -> Reference {
        Reference {
            accuracy: 0.4730,
            pretrain_seconds: 985.0,
            classifier_seconds: 238.0,
            baselines: "—",
            note: "The report started ResNet-18 from ImageNet weights; 49.97 % with batch 512, \
                   about 51 % with ResNet-34.",
        }
    }
}

/// The machine-readable summary of a run (`results.json`).
#[derive(Serialize, Debug, Clone)]
pub struct Results {
    /// `mnist` or `cifar10`.
    pub dataset: String,
    /// Augmentation recipe.
    pub recipe: String,
    /// Seed.
    pub seed: u64,
    /// Encoder description.
    pub encoder: String,
    /// Linear-probe accuracy on the test set (fraction).
    pub test_accuracy: f64,
    /// Linear-probe accuracy on the labeled training set after the last epoch (fraction).
    pub train_accuracy: f64,
    /// kNN accuracy on frozen features, when computed.
    pub knn_accuracy: Option<f64>,
    /// The kNN monitor after each pretraining epoch: (epochs done, accuracy on held-out
    /// training images).
    pub knn_monitor: Vec<(usize, f64)>,
    /// Test accuracy per class (fraction).
    pub per_class_accuracy: Vec<f64>,
    /// Confusion matrix, rows = true class, columns = predicted.
    pub confusion: Vec<Vec<usize>>,
    /// Last pretraining epoch's mean NT-Xent loss.
    pub final_pretrain_loss: f64,
    /// Pretraining throughput (source images per second, two views each).
    pub pretrain_images_per_s: f64,
    /// Seconds of SimCLR pretraining (this process only, on resume).
    pub pretrain_seconds: f64,
    /// Seconds of feature extraction + linear classifier.
    pub classifier_seconds: f64,
    /// Seconds of the clustering baselines.
    pub baselines_seconds: f64,
    /// Seconds of the whole command.
    pub total_seconds: f64,
    /// k-means cluster accuracy on the test set, when run.
    pub kmeans_accuracy: Option<f64>,
    /// GMM cluster accuracy on the test set, when run.
    pub gmm_accuracy: Option<f64>,
    /// Full baseline reports.
    pub baselines: Vec<ClusteringReport>,
    /// Sizes of the pretraining, labeled and test sets.
    pub sizes: [usize; 3],
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), pct)
}

/// Renders `report.md`.
pub fn markdown(
    r: &Results,
    reference: &Reference,
    settings: &str,
    class_names: &[String],
) -> String {
    let mut md = String::new();
    let title = if r.dataset == "mnist" {
        "MNIST"
    } else {
        "CIFAR-10"
    };
    md += &format!("# SimCLR on {title}: frozen encoder + linear head\n\n");
    md += &format!(
        "Encoder {}, recipe `{}`, seed {}; {} unlabeled images for pretraining, {} labeled, {} test.\n\n",
        r.encoder, r.recipe, r.seed, r.sizes[0], r.sizes[1], r.sizes[2]
    );
    md += "| | this run | the lab report |\n|---|---:|---:|\n";
    md += &format!(
        "| **test accuracy** (linear head) | **{}** | {} |\n",
        pct(r.test_accuracy),
        pct(reference.accuracy)
    );
    md += &format!(
        "| pretraining time | {:.1} s | {:.0} s |\n",
        r.pretrain_seconds, reference.pretrain_seconds
    );
    md += &format!(
        "| classifier time | {:.1} s | {:.0} s |\n",
        r.classifier_seconds, reference.classifier_seconds
    );
    md += &format!(
        "| total (SimCLR + classifier) | {:.1} s | {:.0} s |\n",
        r.pretrain_seconds + r.classifier_seconds,
        reference.pretrain_seconds + reference.classifier_seconds
    );
    if !r.baselines.is_empty() {
        md += &format!(
            "| k-means accuracy (pixels) | {} | {} |\n",
            opt_pct(r.kmeans_accuracy),
            reference.baselines
        );
        md += &format!(
            "| GMM accuracy (PCA pixels) | {} | {} |\n",
            opt_pct(r.gmm_accuracy),
            reference.baselines
        );
        md += &format!("| baselines time | {:.1} s | — |\n", r.baselines_seconds);
    }
    if let Some(knn) = r.knn_accuracy {
        md += &format!(
            "| kNN accuracy (k = 200, frozen features) | {} | — |\n",
            pct(knn)
        );
    }
    md += &format!("| whole command | {:.1} s | — |\n\n", r.total_seconds);
    md += &format!("{}\n\n", reference.note);
    md += &format!(
        "Pretraining ran at {:.0} images/s (two views each); its last epoch's NT-Xent loss was {:.4}. \
         The linear head reached {} on its own training set.\n\n",
        r.pretrain_images_per_s,
        r.final_pretrain_loss,
        pct(r.train_accuracy)
    );
    if let Some(&(epochs, acc)) = r.knn_monitor.last() {
        md += &format!(
            "The kNN monitor (held-out training images) read {} after epoch {epochs}.\n\n",
            pct(acc)
        );
    }
    md += "## Plots\n\n![pretraining loss](pretrain_loss.png)\n\n";
    if !r.knn_monitor.is_empty() {
        md += "![kNN monitor](knn_monitor.png)\n\n";
    }
    md += "![classifier](classifier.png)\n\n![confusion matrix](confusion.png)\n\n";
    md += "## Test accuracy per class\n\n| class | accuracy |\n|---|---:|\n";
    for (i, a) in r.per_class_accuracy.iter().enumerate() {
        let name = class_names.get(i).cloned().unwrap_or_else(|| i.to_string());
        md += &format!("| {name} | {} |\n", pct(*a));
    }
    if !r.baselines.is_empty() {
        md +=
            "\n## Clustering baselines (fit on the pretraining images, scored on the test set)\n\n";
        md += "| method | accuracy | NMI | ARI | fit time |\n|---|---:|---:|---:|---:|\n";
        for b in &r.baselines {
            md += &format!(
                "| {} | {} | {:.4} | {:.4} | {:.1} s |\n",
                b.method,
                pct(b.accuracy),
                b.nmi,
                b.ari,
                b.fit_seconds
            );
        }
    }
    md += &format!("\n## Settings\n\n```\n{settings}\n```\n");
    md
}

/// The short comparison printed at the end of a run.
pub fn summary_table(r: &Results, reference: &Reference) -> String {
    let mut t = String::new();
    t += &format!("{:<34} {:>12} {:>12}\n", "", "this run", "lab report");
    t += &format!(
        "{:<34} {:>12} {:>12}\n",
        "test accuracy (frozen + linear)",
        pct(r.test_accuracy),
        pct(reference.accuracy)
    );
    t += &format!(
        "{:<34} {:>10.1} s {:>10.0} s\n",
        "pretraining", r.pretrain_seconds, reference.pretrain_seconds
    );
    t += &format!(
        "{:<34} {:>10.1} s {:>10.0} s\n",
        "classifier", r.classifier_seconds, reference.classifier_seconds
    );
    if !r.baselines.is_empty() {
        t += &format!(
            "{:<34} {:>12} {:>12}\n",
            "k-means accuracy (pixels)",
            opt_pct(r.kmeans_accuracy),
            reference.baselines
        );
        t += &format!(
            "{:<34} {:>12} {:>12}\n",
            "GMM accuracy (PCA pixels)",
            opt_pct(r.gmm_accuracy),
            reference.baselines
        );
        t += &format!(
            "{:<34} {:>10.1} s {:>12}\n",
            "baselines", r.baselines_seconds, "—"
        );
    }
    t += &format!(
        "{:<34} {:>10.1} s {:>12}\n",
        "whole command", r.total_seconds, "—"
    );
    t
}
