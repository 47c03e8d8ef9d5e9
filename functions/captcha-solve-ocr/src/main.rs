//! `captcha-solve-ocr`: ocr queue records → the OCR model (loaded once per
//! cold start) → answer stored and charged, retried, or unsolvable.

use std::sync::Arc;

use captcha_lambda::{handlers, run_sqs, Error, Init};
use captcha_ocr::port::OcrSolver;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("captcha-solve-ocr");
    let (_, core) = init.core().await?;
    let solver: Arc<dyn captcha_lambda::ImageSolver> = Arc::new(OcrSolver::load()?);
    // CPU-bound: one image at a time per instance (the model is not the bottleneck of a batch of 5).
    run_sqs(init, 1, move |record| {
        let (core, solver) = (core.clone(), solver.clone());
        async move { handlers::solve_image(&core, solver, &record).await }
    })
    .await
}
