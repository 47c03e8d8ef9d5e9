//! The core's shared GIVEN/WHEN/THEN suite on SQS + DynamoDB (LocalStack),
//! each test on freshly cloned tables and queues (see `common`).
//! Run with `tests/aws.sh`.

mod common;

captcha_core::port_suite!(common::make; #[ignore = "needs LocalStack: run tests/aws.sh"]);
