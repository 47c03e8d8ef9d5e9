//! Every error a client can see, named after the classic protocol's codes.
//!
//! The core returns these; the protocol layer renders them as the classic
//! string (`ERROR_ZERO_BALANCE`) or as the JSON task API's numbered error.

use std::fmt;

/// A client-visible error. The variant names mirror the classic codes; `code()`
/// gives the exact wire spelling and `json_id()` the Anti-Captcha numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // --- submit ---
    /// The key is not 32 characters of the expected alphabet.
    WrongUserKey,
    KeyDoesNotExist,
    ZeroBalance,
    /// `pageurl` missing or unusable.
    PageUrl,
    /// Too many unfinished tasks for this key.
    NoSlotAvailable,
    ZeroCaptchaFilesize,
    TooBigCaptchaFilesize,
    WrongFileExtension,
    ImageTypeNotSupported,
    /// Malformed POST, bad base64, missing body.
    Upload,
    IpNotAllowed,
    IpBanned,
    /// Sitekey malformed or missing.
    GoogleKey,
    ProxyFormat,
    CaptchaImageBlocked,
    /// Request rate too high.
    MaxUserTurn,
    BadParameters,
    /// The method is unknown.
    NoSuchMethod,
    /// The method is known but no pool in this deployment can take it.
    TaskNotSupported,
    // --- results ---
    CaptchaNotReady,
    CaptchaUnsolvable,
    WrongIdFormat,
    WrongCaptchaId,
    EmptyAction,
    ReportNotRecorded,
    DuplicateReport,
    /// Pingback address refused (not registered, malformed or not allowed).
    IpAddres,
    ProxyConnectionFailed,
    /// Something failed on our side; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The classic wire spelling (`res.php` / `in.php`).
    pub fn code(self) -> &'static str {
        use ErrorCode::*;
        match self {
            WrongUserKey => "ERROR_WRONG_USER_KEY",
            KeyDoesNotExist => "ERROR_KEY_DOES_NOT_EXIST",
            ZeroBalance => "ERROR_ZERO_BALANCE",
            PageUrl => "ERROR_PAGEURL",
            NoSlotAvailable => "ERROR_NO_SLOT_AVAILABLE",
            ZeroCaptchaFilesize => "ERROR_ZERO_CAPTCHA_FILESIZE",
            TooBigCaptchaFilesize => "ERROR_TOO_BIG_CAPTCHA_FILESIZE",
            WrongFileExtension => "ERROR_WRONG_FILE_EXTENSION",
            ImageTypeNotSupported => "ERROR_IMAGE_TYPE_NOT_SUPPORTED",
            Upload => "ERROR_UPLOAD",
            IpNotAllowed => "ERROR_IP_NOT_ALLOWED",
            IpBanned => "IP_BANNED",
            GoogleKey => "ERROR_GOOGLEKEY",
            ProxyFormat => "ERROR_PROXY_FORMAT",
            CaptchaImageBlocked => "ERROR_CAPTCHAIMAGE_BLOCKED",
            MaxUserTurn => "MAX_USER_TURN",
            BadParameters => "ERROR_BAD_PARAMETERS",
            NoSuchMethod => "ERROR_NO_SUCH_METHOD",
            TaskNotSupported => "ERROR_TASK_NOT_SUPPORTED",
            CaptchaNotReady => "CAPCHA_NOT_READY",
            CaptchaUnsolvable => "ERROR_CAPTCHA_UNSOLVABLE",
            WrongIdFormat => "ERROR_WRONG_ID_FORMAT",
            WrongCaptchaId => "ERROR_WRONG_CAPTCHA_ID",
            EmptyAction => "ERROR_EMPTY_ACTION",
            ReportNotRecorded => "ERROR_REPORT_NOT_RECORDED",
            DuplicateReport => "ERROR_DUPLICATE_REPORT",
            IpAddres => "ERROR_IP_ADDRES",
            ProxyConnectionFailed => "ERROR_PROXY_CONNECTION_FAILED",
            Internal => "ERROR_INTERNAL",
        }
    }

    /// The JSON task API's `errorId` and `errorCode` (Anti-Captcha numbering).
    pub fn json(self) -> (u32, &'static str) {
        use ErrorCode::*;
        match self {
            WrongUserKey | KeyDoesNotExist => (1, "ERROR_KEY_DOES_NOT_EXIST"),
            NoSlotAvailable | MaxUserTurn => (2, "ERROR_NO_SLOT_AVAILABLE"),
            ZeroCaptchaFilesize => (3, "ERROR_ZERO_CAPTCHA_FILESIZE"),
            TooBigCaptchaFilesize => (4, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
            ZeroBalance => (10, "ERROR_ZERO_BALANCE"),
            IpNotAllowed => (11, "ERROR_IP_NOT_ALLOWED"),
            CaptchaUnsolvable => (12, "ERROR_CAPTCHA_UNSOLVABLE"),
            NoSuchMethod | EmptyAction => (14, "ERROR_NO_SUCH_METHOD"),
            ImageTypeNotSupported | WrongFileExtension | Upload | CaptchaImageBlocked => {
                (15, "ERROR_IMAGE_TYPE_NOT_SUPPORTED")
            }
            WrongIdFormat | WrongCaptchaId | ReportNotRecorded | DuplicateReport => (16, "ERROR_NO_SUCH_CAPCHA_ID"),
            IpBanned => (21, "ERROR_IP_BLOCKED"),
            BadParameters | PageUrl | ProxyFormat | IpAddres => (22, "ERROR_TASK_ABSENT"),
            TaskNotSupported => (23, "ERROR_TASK_NOT_SUPPORTED"),
            GoogleKey => (31, "ERROR_RECAPTCHA_INVALID_SITEKEY"),
            ProxyConnectionFailed => (52, "ERROR_FAILED_LOADING_WIDGET"),
            CaptchaNotReady => (0, "CAPCHA_NOT_READY"),
            Internal => (14, "ERROR_INTERNAL"),
        }
    }

    /// A one-line human explanation, sent as `error_text` / `errorDescription`.
    pub fn description(self) -> &'static str {
        use ErrorCode::*;
        match self {
            WrongUserKey => "The API key must be 32 characters.",
            KeyDoesNotExist => "The API key does not exist.",
            ZeroBalance => "The balance does not cover the price of this task.",
            PageUrl => "The pageurl parameter is missing or not an http(s) URL.",
            NoSlotAvailable => "Too many unfinished tasks for this key; wait for some to finish.",
            ZeroCaptchaFilesize => "The image is smaller than 100 bytes.",
            TooBigCaptchaFilesize => "The image is larger than the size limit.",
            WrongFileExtension => "Only JPEG, PNG and GIF images are accepted.",
            ImageTypeNotSupported => "The image bytes are not a JPEG, PNG or GIF.",
            Upload => "The request body or its base64 image could not be read.",
            IpNotAllowed => "Requests from this IP address are not allowed for this key.",
            IpBanned => "This IP address is temporarily banned after too many bad keys.",
            GoogleKey => "The sitekey is missing or malformed.",
            ProxyFormat => "The proxy must be [login:pass@]host:port.",
            CaptchaImageBlocked => "This image is blocked.",
            MaxUserTurn => "Too many requests; slow down.",
            BadParameters => "A parameter is missing or has an invalid value.",
            NoSuchMethod => "The method is unknown.",
            TaskNotSupported => "No solver pool in this deployment takes this task type.",
            CaptchaNotReady => "The task is not solved yet.",
            CaptchaUnsolvable => "The task could not be solved; it was not charged.",
            WrongIdFormat => "Task ids are digits only.",
            WrongCaptchaId => "No such task for this key, or its result has expired.",
            EmptyAction => "The action parameter is missing or unknown.",
            ReportNotRecorded => "Reports are recorded only within 15 minutes of a solved task.",
            DuplicateReport => "This task was already reported.",
            IpAddres => "The pingback address is not allowed.",
            ProxyConnectionFailed => "The proxy could not be reached.",
            Internal => "An internal error occurred; the request may be retried.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for ErrorCode {}
