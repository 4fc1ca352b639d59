"use client";

import Link from "next/link";
import { useCallback, useEffect, useState } from "react";
import { useSearchParams } from "next/navigation";
import ApiDownBanner from "./ApiDownBanner";
import ProductCard from "./ProductCard";
import { apiGet, categoryLabel } from "./api";

export default function Catalogue() {
  const searchParams = useSearchParams();
  const category = (searchParams.get("category") || "").toLowerCase();
  const [state, setState] = useState({ status: "loading", products: [], categories: [] });
  const [attempt, setAttempt] = useState(0);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    const controller = new AbortController();
    const query = category ? `?category=${encodeURIComponent(category)}` : "";
    setState((s) => ({ ...s, status: "loading" }));
    apiGet(`/api/products${query}`, { signal: controller.signal })
      .then((body) =>
        setState({ status: "ready", products: body.products, categories: body.categories }),
      )
      .catch((err) => {
        if (controller.signal.aborted) return;
        if (err.status === 400) {
          // Unknown category: say so and still offer the valid ones.
          apiGet("/api/products", { signal: controller.signal })
            .then((body) =>
              setState({ status: "unknown-category", products: [], categories: body.categories }),
            )
            .catch(() => !controller.signal.aborted && setState({ status: "error", products: [], categories: [], detail: err.message }));
          return;
        }
        setState({ status: "error", products: [], categories: [], detail: err.message });
      });
    return () => controller.abort();
  }, [category, attempt]);

  const chips = ["", ...state.categories];

  return (
    <section aria-labelledby="catalogue-heading">
      <div className="toolbar">
        <h1 id="catalogue-heading" className="section-title">
          {category && state.status === "ready" ? categoryLabel(category) : "New season essentials"}
        </h1>
        {state.categories.length > 0 ? (
          <nav className="chips" aria-label="Filter by category">
            {chips.map((c) => {
              const active = c === category;
              return (
                <Link
                  key={c || "all"}
                  href={c ? `/?category=${encodeURIComponent(c)}` : "/"}
                  scroll={false}
                  className={active ? "chip chip-active" : "chip"}
                  aria-current={active ? "page" : undefined}
                  data-testid="category-chip"
                  data-category={c || "all"}
                >
                  {c ? categoryLabel(c) : "All"}
                </Link>
              );
            })}
          </nav>
        ) : null}
      </div>

      {state.status === "error" ? <ApiDownBanner detail={state.detail} onRetry={retry} /> : null}

      {state.status === "unknown-category" ? (
        <div className="banner" role="status" data-testid="unknown-category">
          There is no “{category}” category. Pick one above or <Link href="/">see everything</Link>.
        </div>
      ) : null}

      {state.status === "loading" && state.products.length === 0 ? (
        <ul className="grid" aria-busy="true" aria-label="Loading products">
          {Array.from({ length: 8 }, (_, i) => (
            <li key={i} className="card card-skeleton" />
          ))}
        </ul>
      ) : null}

      {state.products.length > 0 ? (
        <ul
          className={state.status === "loading" ? "grid grid-loading" : "grid"}
          data-testid="product-grid"
          data-category={category || "all"}
          data-status={state.status}
        >
          {state.products.map((p) => (
            <ProductCard key={p.id} product={p} />
          ))}
        </ul>
      ) : null}

      {state.status === "ready" && state.products.length === 0 ? (
        <p className="empty">Nothing here yet. New pieces arrive soon.</p>
      ) : null}
    </section>
  );
}
