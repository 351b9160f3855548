// Shareable state (app/urlstate.py): when the URL changes while a page is shown (the guided tour,
// the browser's back button), set the page's controls to the URL's values. The server parses the
// URL (app.urlstate.component_values); this file only sets what differs, and skips components
// that are not in the layout (another tab is shown, or the layout has no such control).
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    digiplat_urlstate: {
        apply: function (values) {
            var api = window.dash_component_api;
            var applied = 0;
            (values || []).forEach(function (entry) {
                var component;
                try {  // getLayout throws for an id that is not in the layout
                    component = api && api.getLayout ? api.getLayout(entry.id) : undefined;
                } catch (err) {
                    component = undefined;
                }
                if (!component || !component.props) {
                    return;
                }
                var current = component.props[entry.prop];
                // the same value is not set again: each set fires the control's callbacks
                if (current !== undefined && current !== null && String(current) === String(entry.value)) {
                    return;
                }
                var props = {};
                props[entry.prop] = entry.value;
                window.dash_clientside.set_props(entry.id, props);
                applied += 1;
            });
            return applied;
        }
    }
});
