//! Accuracy, latency and throughput of the OCR engine (written next).

fn main() {
    eprintln!("ocr-bench: not written yet");
}
