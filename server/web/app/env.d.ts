/** Bun's bundler takes CSS imports; the page gets the styles as a file of their own. */
declare module "*.css";
