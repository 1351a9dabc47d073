// The interactive API docs (/docs): Swagger UI from the swagger-ui-bundle package, no CDN.
// A file of its own, not an inline script, so the page keeps script-src 'self'.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
