import { Suspense } from "react";
import Catalogue from "./components/Catalogue";

export default function HomePage() {
  return (
    <>
      <section className="hero">
        <div>
          <p className="hero-kicker">Sustainable fashion, made to last</p>
          <p className="hero-title">Clothes that feel good and do good.</p>
          <p className="hero-text">
            Organic, recycled and regenerated materials, transparent sourcing and timeless cuts.
          </p>
        </div>
      </section>
      <Suspense fallback={<p className="empty">Loading the catalogue…</p>}>
        <Catalogue />
      </Suspense>
    </>
  );
}
