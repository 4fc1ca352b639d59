"use client";

// The browser calls the API on the same origin: the load balancer routes
// /api/* to the backend and everything else to this storefront.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

export async function apiGet(path, { signal, timeoutMs = 8000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const onAbort = () => controller.abort();
  signal?.addEventListener("abort", onAbort);
  let response;
  try {
    response = await fetch(path, {
      headers: { Accept: "application/json" },
      signal: controller.signal,
      cache: "no-store",
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError("The StyleSphere API could not be reached.", 0);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || body === null) {
    const message = (body && body.error) || `The API answered with status ${response.status}.`;
    throw new ApiError(message, response.status);
  }
  return body;
}

// Cart and order calls change state: the cart is identified by an HttpOnly cookie
// the API sets, which same-origin fetches send and receive by default.
export async function apiSend(path, { method = "POST", body, timeoutMs = 8000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Accept: "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
      signal: controller.signal,
      cache: "no-store",
    });
  } catch {
    throw new ApiError("The StyleSphere API could not be reached.", 0);
  } finally {
    clearTimeout(timer);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || payload === null) {
    throw new ApiError(errorMessage(payload, response.status), response.status);
  }
  return payload;
}

// The API's JSON errors say what went wrong in `error` and, for people, `detail`.
export function errorMessage(body, status) {
  if (body && body.error) {
    const detail = body.detail ? `: ${body.detail}` : "";
    return `${body.error.charAt(0).toUpperCase()}${body.error.slice(1)}${detail}.`.replace(/\.\.$/, ".");
  }
  return `The API answered with status ${status}.`;
}

// Components that show the cart (the header's count) listen for this after a change.
export const CART_CHANGED = "stylesphere:cart-changed";

export function announceCart(cart) {
  window.dispatchEvent(new CustomEvent(CART_CHANGED, { detail: cart }));
}

export function formatPrice(amount, currency) {
  try {
    return new Intl.NumberFormat("en-IE", { style: "currency", currency }).format(amount);
  } catch {
    return `${Number(amount).toFixed(2)} ${currency}`;
  }
}

export function categoryLabel(category) {
  return category ? category.charAt(0).toUpperCase() + category.slice(1) : "";
}
