//! The page, embedded in the binary: one HTML shell, a style sheet, a script and an icon. No
//! build step, nothing fetched from elsewhere: the viewer works offline.

/// The shell of every page; the script fills it from the API.
pub const INDEX_HTML: &str = include_str!("assets/index.html");

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// An asset by name: its content type and text.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        "icon.svg" => Some(("image/svg+xml", ICON_SVG)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Content-Security-Policy refuses inline script and style: the shell must have none.
    #[test]
    fn the_shell_has_no_inline_script_or_style() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(!html.contains("<style"));
        assert!(!html.contains(" style="));
        assert!(!html.contains(" on"), "no inline event handlers");
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/assets/app.js\""));
    }

    /// The script never hands a string to an HTML parser (Trusted Types would refuse it at
    /// run time anyway; this finds it before).
    #[test]
    fn the_script_uses_no_html_sinks() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
            "srcdoc",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
