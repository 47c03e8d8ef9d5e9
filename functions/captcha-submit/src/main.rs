//! `captcha-submit`: the API router behind API Gateway (REST v1 proxy). Submit
//! and poll serve the same router; API Gateway routes `/in.php` + `/createTask`
//! to submit and `/res.php` + `/getTaskResult` + … to poll (`infra/template.yaml`).

#[tokio::main]
async fn main() -> Result<(), captcha_lambda::Error> {
    let init = captcha_lambda::Init::start("captcha-submit");
    captcha_lambda::http::run_http(init).await
}
