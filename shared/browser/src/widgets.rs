//! Widget drivers: load the page, click the widget's checkbox as a person
//! would (a real mouse click at its centre), and return the token the widget
//! issues. Nothing is forged: the token is whatever the page's own widget
//! produced.

use std::time::Duration;

use crate::{BrowserError, BrowserPool, TaskPage};

/// How long a loaded page may take to show its widget before [`BrowserError::NoWidget`].
const WIDGET_APPEAR: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// Listens (capture phase, before any page script) for the widgets'
/// documented events: ALTCHA `verified` (`detail.payload`), `statechange`
/// (`detail.state` `error`) and `codechallenge` (a code to type from an
/// image: a human challenge, not solved here), Cap `solve` (`detail.token`)
/// and `error` (`detail.message`).
const LISTENER: &str = r#"(() => {
  if (window.__captchaBrowser) return;
  const s = { token: '', error: '', challenge: false };
  window.addEventListener('statechange', (e) => {
    const st = e && e.detail && e.detail.state;
    if (st === 'error') s.error = 'widget entered the error state';
  }, true);
  window.addEventListener('codechallenge', () => { s.challenge = true; }, true);
  Object.defineProperty(window, '__captchaBrowser', { value: s });
  window.addEventListener('verified', (e) => {
    const p = e && e.detail && e.detail.payload;
    if (typeof p === 'string' && p) s.token = p;
  }, true);
  window.addEventListener('solve', (e) => {
    const t = e && e.detail && e.detail.token;
    if (typeof t === 'string' && t) s.token = t;
  }, true);
  window.addEventListener('error', (e) => {
    const d = e && e.detail;
    if (d && typeof d === 'object') s.error = String(d.message || d.error || d.code || 'error');
  }, true);
})();"#;

/// The centre of an element, scrolled into view, as `{x, y, w, h}`; `null`
/// when the widget is absent, `{missing: true}` when the widget is there but
/// its clickable part is not (yet).
fn locate_js(widget_selector: &str, target_selectors: &str) -> String {
    let w = serde_json::Value::from(widget_selector);
    let t = serde_json::Value::from(target_selectors);
    format!(
        r#"(() => {{
  const w = document.querySelector({w});
  if (!w) return null;
  const roots = [w.shadowRoot, w].filter(Boolean);
  let el = null;
  for (const r of roots) {{ el = r.querySelector({t}); if (el) break; }}
  if (!el) return {{ missing: true }};
  el.scrollIntoView({{ block: 'center', inline: 'center' }});
  const b = el.getBoundingClientRect();
  if (!(b.width > 0 && b.height > 0)) return {{ missing: true }};
  return {{ x: b.left + b.width / 2, y: b.top + b.height / 2, w: b.width, h: b.height }};
}})()"#
    )
}

/// Waits for the clickable part of a widget and clicks its centre.
async fn click_widget(tp: &TaskPage, locate: &str) -> Result<(), BrowserError> {
    let appear_by = tokio::time::Instant::now() + WIDGET_APPEAR;
    let mut seen = false;
    loop {
        let v = tp.eval_settled(locate).await?;
        match (v.get("x").and_then(|x| x.as_f64()), v.get("y").and_then(|y| y.as_f64())) {
            (Some(x), Some(y)) => return tp.click_at(x, y).await,
            _ => seen |= !v.is_null(),
        }
        let now = tokio::time::Instant::now();
        if !seen && now >= appear_by {
            return Err(BrowserError::NoWidget);
        }
        if now + POLL >= tp.deadline() {
            return Err(if seen { BrowserError::Deadline } else { BrowserError::NoWidget });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Reads the token from the event listener or from hidden form fields.
fn token_js(fields: &[&str]) -> String {
    let fields = serde_json::Value::from(fields.to_vec());
    format!(
        r#"(() => {{
  const s = window.__captchaBrowser;
  if (s && s.token) return s.token;
  for (const name of {fields}) {{
    const sel = '[name="' + name + '"]';
    let f = document.querySelector(sel);
    if (!f) for (const h of document.querySelectorAll('altcha-widget, cap-widget')) {{
      f = (h.shadowRoot && h.shadowRoot.querySelector(sel)) || null;
      if (f) break;
    }}
    if (f && typeof f.value === 'string' && f.value) return f.value;
  }}
  return '';
}})()"#
    )
}

/// Waits for the token the widget issues; a human challenge ends the task
/// as [`BrowserError::Unsolvable`], a widget error as [`BrowserError::Widget`].
async fn wait_token(tp: &TaskPage, fields: &[&str]) -> Result<String, BrowserError> {
    let read = token_js(fields);
    let status = format!(
        "(() => {{ const s = window.__captchaBrowser || {{}}; return {{ token: {read}, error: s.error || '', challenge: !!s.challenge }}; }})()"
    );
    loop {
        let v = tp.eval_settled(&status).await?;
        if let Some(t) = v.get("token").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
            return Ok(t.to_string());
        }
        if v.get("challenge").and_then(|c| c.as_bool()) == Some(true) {
            return Err(BrowserError::Unsolvable);
        }
        if let Some(e) = v.get("error").and_then(|e| e.as_str()).filter(|e| !e.is_empty()) {
            return Err(BrowserError::Widget(e.chars().take(200).collect()));
        }
        if tokio::time::Instant::now() + POLL >= tp.deadline() {
            return Err(BrowserError::Deadline);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Solves an ALTCHA widget (`<altcha-widget>`) on `url`: clicks its checkbox,
/// waits for the `verified` event (or the hidden `altcha` field) and returns
/// the payload.
pub async fn altcha(pool: &BrowserPool, url: &str) -> Result<String, BrowserError> {
    let url = url.to_string();
    pool.run(|tp| async move {
        tp.on_new_document(LISTENER).await?;
        tp.goto(&url).await?;
        click_widget(&tp, &locate_js("altcha-widget", "input[type=checkbox]")).await?;
        wait_token(&tp, &["altcha"]).await
    })
    .await
}

/// Solves a Cap widget (`<cap-widget>`) on `url`: clicks the trigger inside its
/// shadow root, waits for the `solve` event (or the hidden `cap-token` field)
/// and returns the token.
pub async fn cap(pool: &BrowserPool, url: &str) -> Result<String, BrowserError> {
    let url = url.to_string();
    pool.run(|tp| async move {
        tp.on_new_document(LISTENER).await?;
        tp.goto(&url).await?;
        click_widget(&tp, &locate_js("cap-widget", ".captcha-trigger, [part=trigger], [role=button]")).await?;
        wait_token(&tp, &["cap-token"]).await
    })
    .await
}

/// Third-party token widgets. They cannot be tested end to end here; the
/// driver renders the page, clicks the widget's checkbox once as a person
/// would and reads the documented response field until the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWidget {
    Turnstile,
    Recaptcha,
    Hcaptcha,
}

impl TokenWidget {
    /// The form field the widget fills with its token.
    pub fn response_field(self) -> &'static str {
        match self {
            TokenWidget::Turnstile => "cf-turnstile-response",
            TokenWidget::Recaptcha => "g-recaptcha-response",
            TokenWidget::Hcaptcha => "h-captcha-response",
        }
    }

    fn container_class(self) -> &'static str {
        match self {
            TokenWidget::Turnstile => "cf-turnstile",
            TokenWidget::Recaptcha => "g-recaptcha",
            TokenWidget::Hcaptcha => "h-captcha",
        }
    }
}

/// Where to click for a token widget: the checkbox sits near the left edge of
/// the widget's iframe, vertically centred. `null` when there is no widget
/// with this sitekey yet.
fn token_locate_js(kind: TokenWidget, sitekey: &str) -> String {
    let key = serde_json::Value::from(sitekey);
    let class = serde_json::Value::from(kind.container_class());
    format!(
        r#"(() => {{
  const key = {key};
  let c = Array.from(document.querySelectorAll('[data-sitekey]')).find((e) => e.getAttribute('data-sitekey') === key)
       || document.querySelector('.' + {class});
  let frame = c ? c.querySelector('iframe') : null;
  if (!frame) frame = Array.from(document.querySelectorAll('iframe')).find((f) => (f.src || '').includes(key)) || null;
  if (!c && !frame) return null;
  const el = frame || c;
  el.scrollIntoView({{ block: 'center', inline: 'center' }});
  const b = el.getBoundingClientRect();
  if (!(b.width > 0 && b.height > 0)) return {{ missing: true }};
  return {{ x: b.left + Math.min(30, b.width / 2), y: b.top + b.height / 2, w: b.width, h: b.height }};
}})()"#
    )
}

/// Renders `pageurl`, clicks the `sitekey` widget and returns the token the
/// widget writes into its response field. If the widget issues none before
/// the deadline (it wants a challenge this service does not solve, or refuses
/// automated browsers), fails with [`BrowserError::Unsolvable`].
pub async fn token_widget(
    pool: &BrowserPool,
    kind: TokenWidget,
    pageurl: &str,
    sitekey: &str,
) -> Result<String, BrowserError> {
    let url = pageurl.to_string();
    let locate = token_locate_js(kind, sitekey);
    let read = token_js(&[kind.response_field()]);
    pool.run(|tp| async move {
        tp.goto(&url).await?;
        // A widget may issue its token without interaction.
        if let serde_json::Value::String(t) = tp.eval(&read).await? {
            if !t.is_empty() {
                return Ok(t);
            }
        }
        click_widget(&tp, &locate).await?;
        match tp.poll_string(&read, POLL).await {
            Err(BrowserError::Deadline) => Err(BrowserError::Unsolvable),
            r => r,
        }
    })
    .await
}
