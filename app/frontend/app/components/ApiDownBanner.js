"use client";

export default function ApiDownBanner({ detail, onRetry }) {
  return (
    <div className="banner banner-error" role="alert" data-testid="api-error">
      <div>
        <strong>Our catalogue is taking a short break.</strong>
        <p>
          The StyleSphere API is not responding right now, so products cannot be shown.
          Please try again in a moment.
        </p>
        {detail ? <p className="banner-detail">{detail}</p> : null}
      </div>
      {onRetry ? (
        <button type="button" className="button" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}
