// The guided tour (app/tour.py). Keys: ArrowRight / PageDown next, ArrowLeft / PageUp back
// (a presenter's clicker sends PageDown / PageUp), Esc closes. They press the panel's own buttons,
// so keys and clicks take one path. Keys typed into an input, a table cell or a dropdown are
// left alone.
(function () {
    var KEYS = {ArrowRight: "tour-next", PageDown: "tour-next", ArrowLeft: "tour-back", PageUp: "tour-back",
                Escape: "tour-close"};

    function tourOpen() {
        var root = document.getElementById("app-root");
        return !!root && root.classList.contains("tour-open");
    }

    function typing(target) {
        if (!target || !target.closest) {
            return false;
        }
        return !!target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true'], .ag-cell-inline-editing, .Select, .dash-dropdown");
    }

    document.addEventListener("keydown", function (event) {
        var id = KEYS[event.key];
        if (!id || !tourOpen() || event.altKey || event.ctrlKey || event.metaKey || (typing(event.target) && id !== "tour-close")) {
            return;
        }
        var button = document.getElementById(id);
        if (button && !button.disabled) {
            event.preventDefault();
            event.stopPropagation();  // the map would pan on the arrow keys
            button.click();
        }
    }, true);

    function props(id) {
        var api = window.dash_component_api;
        try {  // getLayout throws for an id that is not in the layout
            var component = api && api.getLayout ? api.getLayout(id) : undefined;
            return component && component.props;
        } catch (err) {
            return undefined;
        }
    }

    // Steps that need a market result: once the page shows the step's values, press the page's own
    // "Clear market" button if no current result is shown (none yet, or one marked outdated); on a
    // page without that button (Validation) without a result, ask the server for the round.
    var pending = null;
    function follow(payload) {
        if (pending) {
            clearInterval(pending);
            pending = null;
        }
        if (!payload || !payload.clear) {
            return window.dash_clientside.no_update;
        }
        var t0 = Date.now();
        var settledAt = null;
        pending = setInterval(function () {
            if (Date.now() - t0 > 30000) {  // the page never showed the step's values: give up
                clearInterval(pending);
                pending = null;
                return;
            }
            var tabs = props("tabs");
            if (payload.tab && (!tabs || tabs.active_tab !== payload.tab)) {
                return;  // the tab is still switching
            }
            var button = document.getElementById("market-clear");
            if (payload.tab && payload.tab !== "market") {
                // a page without the Clear button (Validation): if it has no result, the server
                // clears the URL's round for it (app.tour.tour_round)
                if (!document.getElementById("validation-empty")) {
                    return;  // the page is still rendering
                }
                clearInterval(pending);
                pending = null;
                var shown = props("result-store");
                if (!shown || !shown.data) {
                    window.dash_clientside.set_props("tour-clear", {data: {step: payload.step, at: Date.now()}});
                }
                return;
            }
            if (!button) {
                return;  // the Market tab is still rendering
            }
            var ready = (payload.values || []).every(function (entry) {
                var p = props(entry.id);
                return !p || String(p[entry.prop]) === String(entry.value);
            });
            if (!ready || button.disabled) {
                settledAt = null;
                return;
            }
            // the outdated mark comes from a server callback after a control changed: let it arrive
            settledAt = settledAt || Date.now();
            if (Date.now() - settledAt < 600) {
                return;
            }
            clearInterval(pending);
            pending = null;
            var result = props("result-store");
            var results = document.getElementById("market-results");
            var outdated = !!results && results.classList.contains("outdated");
            if (!result || !result.data || outdated) {
                button.click();
            }
        }, 100);
        return payload.step;
    }

    window.dash_clientside = Object.assign({}, window.dash_clientside, {digiplat_tour: {follow: follow}});
})();
