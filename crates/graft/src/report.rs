//! Reports a person can open: PNG plots (loss and accuracy curves, confusion matrix) and an
//! HTML page that shows them with the run's settings and numbers.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::prelude::*;

use crate::error::{GraftError, Result};
use crate::text::TextRunConfig;
use crate::text::finetune::TextEpoch;
use crate::text::student::WrongExample;
use crate::train::metrics::Evaluation;
use crate::train::reporter::EpochMetrics;
use crate::train::student::{RunConfig, RunHeader};

const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; registering it cannot fail unless the bytes are damaged.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(error: impl std::fmt::Display) -> GraftError {
    GraftError::Invalid(format!("cannot draw a plot: {error}"))
}

/// Draws a `width` x `height` picture with `draw` and writes it to `path` as a PNG, atomically
/// (a reader never sees half a plot).
fn save_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(root)?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(plot_error)?;
    crate::fsutil::write_atomic(path, &png)
}

/// Two panels: loss (train, validation) and accuracy (train, validation) per epoch.
pub fn plot_curves(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    save_png(path, (1000, 400), |root| draw_curves(root, history))
}

fn draw_curves(root: DrawingArea<BitMapBackend, plotters::coord::Shift>, history: &[EpochMetrics]) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(500);
    let epochs = history.len().max(1) as f64;
    let series = |area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
                  title: &str,
                  pick: &dyn Fn(&EpochMetrics) -> (f64, f64),
                  unit: (f64, f64)|
     -> Result<()> {
        let values: Vec<f64> = history.iter().flat_map(|m| [pick(m).0, pick(m).1]).collect();
        let low = values.iter().copied().fold(unit.0, f64::min);
        let high = values.iter().copied().fold(unit.1, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5..epochs + 0.5, low..high.max(low + 1e-6))
            .map_err(plot_error)?;
        chart.configure_mesh().x_desc("epoch").label_style(("sans-serif", 13)).draw().map_err(plot_error)?;
        let train: Vec<(f64, f64)> = history.iter().map(|m| (m.epoch as f64, pick(m).0)).collect();
        let validation: Vec<(f64, f64)> = history.iter().map(|m| (m.epoch as f64, pick(m).1)).collect();
        chart
            .draw_series(LineSeries::new(train.clone(), BLUE.stroke_width(2)))
            .map_err(plot_error)?
            .label("train")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart.draw_series(train.iter().map(|p| Circle::new(*p, 3, BLUE.filled()))).map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(validation.clone(), RED.stroke_width(2)))
            .map_err(plot_error)?
            .label("validation")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
        chart.draw_series(validation.iter().map(|p| Circle::new(*p, 3, RED.filled()))).map_err(plot_error)?;
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(plot_error)
    };
    series(&left, "loss", &|m| (m.train_loss, m.validation_loss), (0.0, 0.0))?;
    series(&right, "accuracy", &|m| (m.train_accuracy, m.validation_accuracy), (0.0, 1.0))?;
    root.present().map_err(plot_error)
}

/// The most classes drawn as a confusion heat map. Past it a map is unreadable (and 2,000
/// classes would be a 7 GB bitmap): `report.html` lists the most frequent confusions instead.
pub const MAX_PLOTTED_CLASSES: usize = 50;
/// How many confusions that list shows.
const LISTED_CONFUSIONS: usize = 30;

/// A confusion matrix as a heat map, counts in the cells, rows = true class. Returns whether it
/// drew one: with more than [`MAX_PLOTTED_CLASSES`] classes it draws nothing (and removes a map
/// an earlier run left at `path`).
pub fn plot_confusion(path: &Path, evaluation: &Evaluation) -> Result<bool> {
    let count = evaluation.classes.len();
    if count > MAX_PLOTTED_CLASSES {
        let _ = std::fs::remove_file(path);
        return Ok(false);
    }
    let cell = (560 / count.max(1)).clamp(24, 80) as i32;
    let label_width = 170;
    let size = (label_width + cell * count as i32 + 20, 60 + cell * count as i32 + 130);
    save_png(path, (size.0 as u32, size.1 as u32), |root| draw_confusion(root, evaluation, cell, label_width))?;
    Ok(true)
}

/// The off-diagonal cells of a confusion matrix, most frequent first: (true, predicted, count).
pub fn top_confusions(evaluation: &Evaluation, limit: usize) -> Vec<(usize, usize, usize)> {
    let mut cells: Vec<(usize, usize, usize)> = evaluation
        .confusion
        .iter()
        .enumerate()
        .flat_map(|(row, counts)| {
            counts
                .iter()
                .enumerate()
                .filter(move |(column, count)| *column != row && **count > 0)
                .map(move |(column, count)| (row, column, *count))
        })
        .collect();
    cells.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    cells.truncate(limit);
    cells
}

fn draw_confusion(
    root: DrawingArea<BitMapBackend, plotters::coord::Shift>,
    evaluation: &Evaluation,
    cell: i32,
    label_width: i32,
) -> Result<()> {
    let count = evaluation.classes.len();
    root.fill(&WHITE).map_err(plot_error)?;
    root.draw_text(
        "confusion matrix (rows: true class, columns: predicted)",
        &("sans-serif", 16).into_text_style(&root),
        (10, 12),
    )
    .map_err(plot_error)?;
    let max = evaluation.confusion.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let top = 50;
    for (row, counts) in evaluation.confusion.iter().enumerate() {
        let y = top + row as i32 * cell;
        root.draw_text(
            &short(&evaluation.classes[row]),
            &("sans-serif", 13).into_text_style(&root),
            (8, y + cell / 2 - 7),
        )
        .map_err(plot_error)?;
        let row_total: usize = counts.iter().sum();
        for (column, value) in counts.iter().enumerate() {
            let x = label_width + column as i32 * cell;
            let shade = 1.0 - (*value as f64 / max);
            let colour = RGBColor((255.0 * shade) as u8, (255.0 * (0.3 + 0.7 * shade)) as u8, 255);
            root.draw(&Rectangle::new([(x, y), (x + cell - 1, y + cell - 1)], colour.filled())).map_err(plot_error)?;
            if row_total > 0 {
                let style = ("sans-serif", 12).into_text_style(&root).color(if shade < 0.5 { &WHITE } else { &BLACK });
                root.draw_text(&value.to_string(), &style, (x + 4, y + cell / 2 - 6)).map_err(plot_error)?;
            }
        }
    }
    let bottom = top + count as i32 * cell + 8;
    for (column, class) in evaluation.classes.iter().enumerate() {
        let x = label_width + column as i32 * cell + cell / 2 - 6;
        let style = ("sans-serif", 12).into_text_style(&root).transform(FontTransform::Rotate90);
        root.draw_text(&short(class), &style, (x + 12, bottom)).map_err(plot_error)?;
    }
    root.present().map_err(plot_error)
}

fn short(name: &str) -> String {
    if name.chars().count() > 16 {
        format!("{}…", name.chars().take(15).collect::<String>())
    } else {
        name.to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What a run's `report.html` shows, whichever the modality: the header every run record has,
/// the sentences and tables the modality adds, and the record itself.
pub struct RunReport<'a> {
    pub header: &'a RunHeader,
    /// The whole run record (`graft.json`), shown at the end.
    pub record: serde_json::Value,
    /// The headline: the accuracy the run reports and how it was measured.
    pub headline: String,
    /// Sentences after the headline (plain text; the writer escapes them).
    pub summary: Vec<String>,
    /// The scores behind the headline, per class.
    pub evaluation: Option<&'a Evaluation>,
    /// One row per epoch, when the student trained by epochs: the column names, then the cells.
    pub epochs: Option<(Vec<&'static str>, Vec<Vec<String>>)>,
    /// The examples it got most confidently wrong, when they are known.
    pub wrong: &'a [WrongExample],
}

impl<'a> RunReport<'a> {
    /// An image run's report: its best epoch, what trained, and each epoch's figures.
    pub fn image(config: &'a RunConfig, history: &[EpochMetrics], evaluation: Option<&'a Evaluation>) -> RunReport<'a> {
        let metrics = &config.header.metrics;
        let accuracy = metrics["validation_accuracy"].as_f64().unwrap_or(0.0);
        let mut summary = vec![format!(
            "{} parameters trained; {} of {} teacher blocks frozen; {} training / {} validation images; seed {}.",
            config.trained_parameters,
            config.frozen_blocks.len(),
            config.frozen_blocks.len() + config.trainable_blocks.len(),
            config.train_images,
            config.validation_images,
            config.header.seed,
        )];
        if let (Some(images), Some(epochs)) = (metrics["refit"]["images"].as_u64(), metrics["refit"]["epochs"].as_u64())
        {
            summary.push(format!(
                "Then refitted: trained again from the start on all {images} images, validation ones included, for the {epochs} epochs the held-out \
                 images chose. The student is that refit; the validation figures here are the held-out run's, the estimate of its accuracy."
            ));
        }
        if let Some(choice) = &config.augmentation_choice {
            summary.push(format!("Augmentation, measured: {}", choice.reason));
        }
        let rows = history
            .iter()
            .map(|m| {
                vec![
                    m.epoch.to_string(),
                    format!("{:.4}", m.train_loss),
                    format!("{:.3}", m.train_accuracy),
                    format!("{:.4}", m.validation_loss),
                    format!("{:.3}", m.validation_accuracy),
                    format!("{:.2e}", m.learning_rate),
                    format!("{:.0}", m.images_per_second),
                    format!("{:.1}", m.seconds),
                ]
            })
            .collect();
        RunReport {
            header: &config.header,
            record: serde_json::to_value(config).unwrap_or_default(),
            headline: format!(
                "validation accuracy {:.2}% (best epoch {} of {})",
                accuracy * 100.0,
                metrics["best_epoch"],
                history.len()
            ),
            summary,
            evaluation,
            epochs: (!history.is_empty())
                .then_some((vec!["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "img/s", "s"], rows)),
            wrong: &[],
        }
    }

    /// A text run's report: how its accuracy was measured, the texts cut to the teacher's
    /// length, each fine-tuning epoch's figures and the most confidently wrong texts.
    pub fn text(config: &'a TextRunConfig, evaluation: &'a Evaluation, wrong: &'a [WrongExample]) -> RunReport<'a> {
        let metrics = &config.header.metrics;
        let history: Vec<TextEpoch> = serde_json::from_value(metrics["history"].clone()).unwrap_or_default();
        let rows = history
            .iter()
            .map(|epoch| {
                vec![
                    epoch.epoch.to_string(),
                    format!("{:.4}", epoch.train_loss),
                    format!("{:.3}", epoch.train_accuracy),
                    epoch.validation_accuracy.map_or_else(|| "-".to_owned(), |accuracy| format!("{accuracy:.3}")),
                    format!("{:.1}", epoch.texts_per_second),
                    format!("{:.1}", epoch.seconds),
                ]
            })
            .collect();
        RunReport {
            header: &config.header,
            record: serde_json::to_value(config).unwrap_or_default(),
            headline: format!(
                "accuracy {:.2}% ({})",
                evaluation.accuracy * 100.0,
                metrics["validation"].as_str().unwrap_or("")
            ),
            summary: vec![format!(
                "{} classes: {}. {} texts were longer than the teacher's {} tokens and were cut; the first {} transformer layers stayed frozen; seed {}.",
                config.header.classes.len(),
                config.header.classes.join(", "),
                metrics["truncated_texts"],
                config.max_length,
                config.cut,
                config.header.seed,
            )],
            evaluation: Some(evaluation),
            epochs: (!history.is_empty())
                .then_some((vec!["epoch", "train loss", "train acc", "val acc", "texts/s", "s"], rows)),
            wrong,
        }
    }
}

/// Writes `report.html` into the run directory, with the plots already there beside it
/// (`curves.png`, `confusion.png`).
pub fn write_run_report(run: &Path, report: &RunReport) -> Result<()> {
    let header = report.header;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>graft run: {teacher} {strategy}</title>\
         <style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}}th{{background:#f4f4f4}}td:first-child{{text-align:left}}</style></head><body>\
         <h1>graft {modality} student: {strategy} on {teacher}</h1><p><b>{headline}</b></p>",
        teacher = escape(&header.teacher),
        strategy = header.strategy,
        modality = header.modality,
        headline = escape(&report.headline),
    );
    for sentence in &report.summary {
        let _ = write!(html, "<p>{}</p>", escape(sentence));
    }
    if let Some(reason) = &header.strategy_reason {
        let _ = write!(html, "<p>Why this strategy: {}</p>", escape(reason));
    }
    if run.join("curves.png").is_file() {
        html.push_str(
            "<h2>Learning curves</h2><img src=\"curves.png\" alt=\"loss and accuracy per epoch\" width=\"1000\">",
        );
    }
    match report.evaluation {
        Some(evaluation) if evaluation.classes.len() > MAX_PLOTTED_CLASSES => {
            let _ = write!(
                html,
                "<h2>Most frequent confusions</h2><p>{} classes are too many to draw as a matrix; the {LISTED_CONFUSIONS} \
                 most frequent mistakes on the validation set:</p><table><tr><th>true class</th><th>predicted</th>\
                 <th>count</th><th>share of the true class</th></tr>",
                evaluation.classes.len()
            );
            for (row, column, count) in top_confusions(evaluation, LISTED_CONFUSIONS) {
                let total: usize = evaluation.confusion[row].iter().sum();
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{count}</td><td>{:.1}%</td></tr>",
                    escape(&evaluation.classes[row]),
                    escape(&evaluation.classes[column]),
                    100.0 * count as f64 / total.max(1) as f64
                );
            }
            html.push_str("</table>");
        }
        _ if run.join("confusion.png").is_file() => {
            html.push_str("<h2>Validation confusion matrix</h2><img src=\"confusion.png\" alt=\"confusion matrix\">")
        }
        _ => {}
    }
    if let Some(evaluation) = report.evaluation {
        html.push_str(
            "<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>examples</th></tr>",
        );
        for class in &evaluation.per_class {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                escape(&class.class),
                class.precision,
                class.recall,
                class.f1,
                class.support
            );
        }
        html.push_str("</table>");
    }
    if let Some((columns, rows)) = &report.epochs {
        html.push_str("<h2>Epochs</h2><table><tr>");
        for column in columns {
            let _ = write!(html, "<th>{}</th>", escape(column));
        }
        html.push_str("</tr>");
        for row in rows {
            html.push_str("<tr>");
            for cell in row {
                let _ = write!(html, "<td>{}</td>", escape(cell));
            }
            html.push_str("</tr>");
        }
        html.push_str("</table>");
    }
    if !report.wrong.is_empty() {
        html.push_str("<h2>Most confidently wrong</h2><table><tr><th>example</th><th>label</th><th>predicted</th><th>confidence</th></tr>");
        for example in report.wrong {
            let shown: String = example.text.chars().take(400).collect();
            let _ = write!(
                html,
                "<tr><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
                escape(&shown),
                escape(&example.location),
                escape(&example.label),
                escape(&example.predicted),
                example.confidence * 100.0
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Settings (graft.json)</h2><pre>");
    html.push_str(&escape(&serde_json::to_string_pretty(&report.record).unwrap_or_default()));
    html.push_str("</pre></body></html>\n");
    crate::fsutil::write_atomic(&run.join("report.html"), html.as_bytes())
}

/// Writes `audit.json`, `audit.html` and the pictures of the first pairs (`audit/pair-N-*.png`:
/// source, crafted image, their difference magnified ten times around mid-grey, target) into the
/// run directory.
pub fn write_audit(
    run: &Path,
    report: &crate::audit::run::AuditReport,
    pictures: &[crate::audit::run::PairImages],
) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|error| GraftError::Invalid(error.to_string()))?;
    crate::fsutil::write_atomic(&run.join("audit.json"), &json)?;
    let folder = run.join("audit");
    std::fs::create_dir_all(&folder).map_err(|source| GraftError::Io { path: folder.clone(), source })?;
    let save = |name: &str, size: usize, channel_major: &[u8]| -> Result<()> {
        let plane = size * size;
        let interleaved: Vec<u8> =
            (0..plane).flat_map(|at| (0..3).map(move |channel| channel_major[channel * plane + at])).collect();
        let path = folder.join(name);
        let image = image::RgbImage::from_raw(size as u32, size as u32, interleaved)
            .ok_or_else(|| GraftError::Invalid(format!("a {size}×{size} picture of the wrong length")))?;
        image.save(&path).map_err(|error| GraftError::Image { path, reason: error.to_string() })
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>graft audit</title>\
         <style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}img{{width:160px;image-rendering:pixelated}}</style></head><body>\
         <h1>What the student inherits: the teacher-mimicry attack</h1>\
         <p>Crafted on the public teacher alone, at the output of <code>{layer}</code>, within a DSSIM budget of {budget}; scored on the student.</p>\
         <table><tr><th>pairs</th><th>attack success</th><th>mean DSSIM</th><th>within budget</th><th>noise at the same DSSIM</th><th>white-box PGD (L∞ 8/255)</th><th>clean accuracy</th></tr>\
         <tr><td>{pairs}</td><td>{attack:.1}%</td><td>{dssim:.4}</td><td>{within}</td><td>{noise:.1}%</td><td>{pgd:.1}%</td><td>{clean:.1}%</td></tr></table>",
        layer = escape(&report.layer),
        budget = report.budget,
        pairs = report.pairs,
        attack = report.attack_success_rate * 100.0,
        dssim = report.mean_dssim,
        within = report.within_budget,
        noise = report.noise_success_rate * 100.0,
        pgd = report.pgd_success_rate * 100.0,
        clean = report.clean_accuracy * 100.0,
    );
    html.push_str("<h2>Pairs</h2><table><tr><th>source</th><th>crafted</th><th>difference ×10</th><th>target</th><th>classes</th><th>DSSIM</th><th>student says</th></tr>");
    for (index, (pictures, example)) in pictures.iter().zip(&report.examples).enumerate() {
        let difference: Vec<u8> = pictures
            .adversarial
            .iter()
            .zip(&pictures.source)
            .map(|(a, s)| (128.0 + 10.0 * (*a as f32 - *s as f32)).clamp(0.0, 255.0) as u8)
            .collect();
        for (kind, pixels) in [
            ("source", &pictures.source),
            ("crafted", &pictures.adversarial),
            ("difference", &difference),
            ("target", &pictures.target),
        ] {
            save(&format!("pair-{index}-{kind}.png"), pictures.size, pixels)?;
        }
        let _ = write!(
            html,
            "<tr><td><img src=\"audit/pair-{index}-source.png\" alt=\"source\"></td><td><img src=\"audit/pair-{index}-crafted.png\" alt=\"crafted\"></td>\
             <td><img src=\"audit/pair-{index}-difference.png\" alt=\"difference\"></td><td><img src=\"audit/pair-{index}-target.png\" alt=\"target\"></td>\
             <td>{} → {}</td><td>{:.4}</td><td>{} ({:.0}% target){}</td></tr>",
            escape(&example.source_class),
            escape(&example.target_class),
            example.dssim,
            escape(&example.predicted),
            example.target_probability * 100.0,
            if example.success { " ✔" } else { "" },
        );
    }
    html.push_str("</table><h2>Settings</h2><pre>");
    html.push_str(&escape(&serde_json::to_string_pretty(&report.mimicry).unwrap_or_default()));
    html.push_str("</pre></body></html>\n");
    crate::fsutil::write_atomic(&run.join("audit.html"), html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::Modality;
    use crate::train::metrics::evaluate;

    /// 2,000 classes, each image predicted as the next class half of the time: no heat map (it
    /// would be a 7 GB bitmap), the report lists the most frequent confusions instead.
    #[test]
    fn thousands_of_classes_are_listed_not_drawn() {
        let classes: Vec<String> = (0..2000).map(|i| format!("class {i}")).collect();
        let (mut probabilities, mut labels) = (Vec::new(), Vec::new());
        for image in 0..4000 {
            let label = image % 2000;
            let predicted = if image % 2 == 0 { label } else { (label + 1) % 2000 };
            let mut row = vec![0.0f32; 2000];
            row[predicted] = 1.0;
            probabilities.extend(row);
            labels.push(label);
        }
        let evaluation = evaluate(&probabilities, &labels, &classes);
        let dir = std::env::temp_dir().join(format!("graft-report-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("confusion.png"), b"an earlier run's map").unwrap();
        assert!(!plot_confusion(&dir.join("confusion.png"), &evaluation).unwrap());
        assert!(!dir.join("confusion.png").exists(), "a stale map would be shown as this run's");
        let top = top_confusions(&evaluation, 3);
        assert_eq!(top.len(), 3);
        assert!(top.iter().all(|(row, column, count)| *column == (row + 1) % 2000 && *count >= 1));
        let header = RunHeader::new(
            Modality::Image,
            "teacher".into(),
            String::new(),
            crate::train::Strategy::Deep,
            classes.clone(),
            0,
            "data".into(),
        );
        let report = RunReport {
            header: &header,
            record: serde_json::Value::Null,
            headline: "headline".into(),
            summary: Vec::new(),
            evaluation: Some(&evaluation),
            epochs: None,
            wrong: &[],
        };
        write_run_report(&dir, &report).unwrap();
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("Most frequent confusions") && html.contains("2000 classes are too many"), "report");
        assert!(!html.contains("confusion.png"));
        // A few classes are still drawn.
        let few = evaluate(&[0.9, 0.1, 0.2, 0.8], &[0, 1], &classes[..2]);
        assert!(plot_confusion(&dir.join("confusion.png"), &few).unwrap());
        assert!(dir.join("confusion.png").is_file());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
