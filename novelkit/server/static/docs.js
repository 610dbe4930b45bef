// Swagger UI for the sidecar; relative URLs so it works under /proxy/PORT/ too.
window.ui = SwaggerUIBundle({
  url: "docs/openapi-3.0.json",
  dom_id: "#swagger-ui",
  deepLinking: false,
  persistAuthorization: false,
});
