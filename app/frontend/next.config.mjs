import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

// In production the ALB sends /api/* to the backend before it reaches this
// server. When BACKEND_INTERNAL_URL is set at build time (the Dockerfile sets
// it to the compose service), /api/* requests that do arrive here directly,
// e.g. on http://<instance>:3000, are proxied to the backend as well.
const backend = (process.env.BACKEND_INTERNAL_URL || "").replace(/\/+$/, "");

/** @type {import('next').NextConfig} */
const nextConfig = {
  output: "standalone",
  // Keep the standalone layout flat (server.js at .next/standalone/) even if
  // a lockfile exists in a parent directory.
  outputFileTracingRoot: here,
  reactStrictMode: true,
  poweredByHeader: false,
  images: { unoptimized: true },
  eslint: { ignoreDuringBuilds: true },
  // Small instances build this app on first boot: one build worker keeps the
  // peak memory low.
  experimental: { cpus: 1, workerThreads: false, webpackBuildWorker: false },
  async rewrites() {
    if (!backend) return [];
    return [{ source: "/api/:path*", destination: `${backend}/api/:path*` }];
  },
  async headers() {
    return [
      {
        source: "/:path*",
        headers: [
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "strict-origin-when-cross-origin" },
          { key: "X-Frame-Options", value: "DENY" },
        ],
      },
    ];
  },
};

export default nextConfig;
