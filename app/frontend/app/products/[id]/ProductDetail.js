"use client";

import Link from "next/link";
import { useCallback, useEffect, useState } from "react";
import AddToCart from "../../components/AddToCart";
import ApiDownBanner from "../../components/ApiDownBanner";
import { apiGet, categoryLabel, formatPrice } from "../../components/api";

export default function ProductDetail({ id }) {
  const [state, setState] = useState({ status: "loading" });
  const [attempt, setAttempt] = useState(0);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    const controller = new AbortController();
    setState({ status: "loading" });
    apiGet(`/api/products/${encodeURIComponent(id)}`, { signal: controller.signal })
      .then((product) => setState({ status: "ready", product }))
      .catch((err) => {
        if (controller.signal.aborted) return;
        setState({ status: err.status === 404 ? "missing" : "error", detail: err.message });
      });
    return () => controller.abort();
  }, [id, attempt]);

  const { product } = state;

  useEffect(() => {
    if (product) document.title = `${product.name} · StyleSphere`;
  }, [product]);

  return (
    <article className="detail-page">
      <Link href="/" className="back-link" data-testid="back-link">
        ← Back to all products
      </Link>

      {state.status === "loading" ? <div className="detail detail-skeleton" aria-busy="true" /> : null}
      {state.status === "error" ? <ApiDownBanner detail={state.detail} onRetry={retry} /> : null}
      {state.status === "missing" ? (
        <div className="banner" role="status" data-testid="product-missing">
          <strong>We could not find that product.</strong> It may have sold out for good.
        </div>
      ) : null}

      {product ? (
        <div className="detail" data-testid="product-detail" data-product-id={product.id}>
          <div className="detail-image">
            <img src={product.image_url} alt={product.name} width={400} height={500} />
          </div>
          <div className="detail-info">
            <Link
              href={`/?category=${encodeURIComponent(product.category)}`}
              className="chip"
              data-testid="detail-category"
            >
              {categoryLabel(product.category)}
            </Link>
            <h1 className="detail-title">{product.name}</h1>
            <p className="detail-price">{formatPrice(product.price, product.currency)}</p>
            <p className="detail-description">{product.description}</p>
            <dl className="facts">
              <div>
                <dt>Materials</dt>
                <dd>{product.materials}</dd>
              </div>
              <div>
                <dt>Why it is better</dt>
                <dd data-testid="sustainability">{product.sustainability}</dd>
              </div>
            </dl>
            <AddToCart product={product} withQuantity />
          </div>
        </div>
      ) : null}
    </article>
  );
}
