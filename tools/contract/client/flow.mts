// A partner's first sale through the TypeScript types generated from gateway/openapi.json
// (`npm run generate`) and openapi-fetch: every path, parameter, body and problem below is
// checked by `tsc --strict` against the document. Run by tests/contract/test_typescript_client.py
// against the live platform: OMNITILL_API_URL (the gateway) and OMNITILL_API_KEY (a test key).
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];

// Every answer has its model in the document, so what comes back is typed strictly: a typo
// in a field name, or a field the document does not promise, fails to compile.
function answer<T>(data: T | undefined, what: string): T {
  if (data === undefined) throw new Error(`${what}: no answer`);
  return data;
}

function fail(what: string, problem: Problem | undefined, status: number): never {
  throw new Error(`${what}: HTTP ${status} ${problem?.code ?? ""} ${problem?.detail ?? ""}`);
}

const baseUrl = process.env["OMNITILL_API_URL"];
const key = process.env["OMNITILL_API_KEY"];
if (!baseUrl || !key) throw new Error("set OMNITILL_API_URL and OMNITILL_API_KEY");
const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });
const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const sku = `TS-${run}`.toUpperCase();

// Where to sell: the merchant's first location.
const places = await api.GET("/v1/locations", { params: { query: { limit: 1 } } });
if (places.error) fail("list locations", places.error, places.response.status);
const location = answer(places.data, "list locations").data[0];
if (!location) throw new Error("the merchant has no location");
const locationId: string = location.id;

// A product, and stock of it at that location.
const made = await api.POST("/v1/products", {
  params: { header: { "Idempotency-Key": `ts-product-${run}` } },
  body: { sku, name: "Typed tee", price: { amount: 1500, currency: "USD" } },
});
if (made.error) fail("create product", made.error, made.response.status);
const product = answer(made.data, "create product");
const stocked = await api.POST("/v1/inventory/adjustments", {
  params: { header: { "Idempotency-Key": `ts-stock-${run}` } },
  body: { sku, location_id: locationId, delta: 5, reason: "received" },
});
if (stocked.error) fail("receive stock", stocked.error, stocked.response.status);

// Sell two in one checkout, paid by a sandbox card.
const sale = await api.POST("/v1/checkouts", {
  params: { header: { "Idempotency-Key": `ts-sale-${run}` } },
  body: {
    location_id: locationId,
    lines: [{ sku, quantity: 2 }],
    tender_type: "card",
    card_token: "tok_visa",
  },
});
if (sale.error) fail("checkout", sale.error, sale.response.status);
const sold = answer(sale.data, "checkout");

// Read the order back.
const read = await api.GET("/v1/orders/{order_id}", {
  params: { path: { order_id: sold.order.id } },
});
if (read.error) fail("read order", read.error, read.response.status);
const order = answer(read.data, "read order");

// A bad request is a typed problem naming the field: a negative price.
const refused = await api.POST("/v1/products", {
  params: { header: { "Idempotency-Key": `ts-bad-${run}` } },
  body: { sku: `${sku}-BAD`, name: "Bad", price: { amount: -1, currency: "USD" } },
});
if (!refused.error) throw new Error("a negative price was accepted");
const problem: Problem = refused.error;

console.log(
  JSON.stringify({
    product: { id: product.id, sku: product.sku, etag: made.response.headers.get("ETag") },
    order: { id: order.id, status: order.status, lines: order.lines, total: order.total },
    problem: { status: refused.response.status, code: problem.code, errors: problem.errors },
  }),
);
