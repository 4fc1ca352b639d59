import Link from "next/link";
import CartLink from "./components/CartLink";
import "./globals.css";

export const metadata = {
  title: "StyleSphere · Sustainable fashion",
  description: "StyleSphere: a small shop for sustainable, long-lasting clothes and accessories.",
};

export const viewport = { width: "device-width", initialScale: 1, themeColor: "#2F5D50" };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>
        <header className="site-header">
          <div className="container header-inner">
            <Link href="/" className="brand" aria-label="StyleSphere home">
              <svg viewBox="0 0 64 64" width="32" height="32" aria-hidden="true">
                <circle cx="32" cy="32" r="30" fill="#2F5D50" />
                <path d="M20 42 Q24 14 46 18 Q44 38 24 44 Z" fill="#CFE3C8" />
                <path d="M22 44 Q30 30 42 22" stroke="#2F5D50" strokeWidth="2.5" fill="none" strokeLinecap="round" />
              </svg>
              <span>StyleSphere</span>
            </Link>
            <p className="tagline">Free carbon-neutral shipping · 60-day returns · Repairs for life</p>
            <CartLink />
          </div>
        </header>
        <main className="container">{children}</main>
        <footer className="site-footer">
          <div className="container">
            © StyleSphere · Sustainable fashion, thoughtfully made.
          </div>
        </footer>
      </body>
    </html>
  );
}
